package main

// cluster-dns: the throwaway cluster's DNS, so that pods find Services by name
// (redis, redis.<ns>, redis.<ns>.svc.cluster.local) as on any cluster. It
// answers A queries for Services from an informer's cache, over UDP, on the
// node IP; every other name gets NXDOMAIN (the cluster has nothing outside it
// to resolve). Headless Services answer with their ready endpoints' addresses.
// CoreDNS would need a second module graph and build; this is ~150 lines.

import (
	"context"
	"flag"
	"fmt"
	"net"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/net/dns/dnsmessage"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
)

func newDNSCommand() *cobra.Command {
	var kubeconfig, listen, domain string
	command := &cobra.Command{
		Use:   "cluster-dns",
		Short: "Answer DNS queries for the cluster's Services",
		RunE: func(*cobra.Command, []string) error {
			return runDNS(kubeconfig, listen, strings.Trim(domain, ".")+".")
		},
	}
	command.Flags().StringVar(&kubeconfig, "kubeconfig", "", "kubeconfig of a user that may list services and endpointslices")
	command.Flags().StringVar(&listen, "listen", "", "UDP address to answer on (ip:port)")
	command.Flags().StringVar(&domain, "cluster-domain", "cluster.local", "the cluster's DNS domain")
	command.Flags().AddGoFlagSet(flag.CommandLine)
	return command
}

type resolver struct {
	domain   string
	services interface {
		Get(ns, name string) (*corev1.Service, error)
	}
	slices func(ns, service string) ([]*discoveryv1.EndpointSlice, error)
}

func runDNS(kubeconfig, listen, domain string) error {
	config, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		return err
	}
	client, err := kubernetes.NewForConfig(config)
	if err != nil {
		return err
	}
	ctx, cancel := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer cancel()
	factory := informers.NewSharedInformerFactory(client, 10*time.Minute)
	services := factory.Core().V1().Services().Lister()
	slices := factory.Discovery().V1().EndpointSlices().Lister()
	factory.Start(ctx.Done())
	factory.WaitForCacheSync(ctx.Done())
	r := &resolver{
		domain: domain,
		services: serviceGetter(func(ns, name string) (*corev1.Service, error) {
			return services.Services(ns).Get(name)
		}),
		slices: func(ns, service string) ([]*discoveryv1.EndpointSlice, error) {
			return slices.EndpointSlices(ns).List(labels.SelectorFromSet(
				labels.Set{discoveryv1.LabelServiceName: service}))
		},
	}
	conn, err := net.ListenPacket("udp", listen)
	if err != nil {
		return err
	}
	go func() { <-ctx.Done(); conn.Close() }()
	fmt.Fprintf(os.Stderr, "cluster-dns: answering for %s on %s\n", domain, listen)
	buf := make([]byte, 1500)
	for {
		n, addr, err := conn.ReadFrom(buf)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			continue
		}
		if reply, err := r.answer(buf[:n]); err == nil {
			conn.WriteTo(reply, addr)
		}
	}
}

type serviceGetter func(ns, name string) (*corev1.Service, error)

func (g serviceGetter) Get(ns, name string) (*corev1.Service, error) { return g(ns, name) }

// answer builds the reply to one query: A records for a Service's name, an
// empty answer for its other types, NXDOMAIN for any other name.
func (r *resolver) answer(query []byte) ([]byte, error) {
	var parser dnsmessage.Parser
	header, err := parser.Start(query)
	if err != nil {
		return nil, err
	}
	question, err := parser.Question()
	if err != nil {
		return nil, err
	}
	builder := dnsmessage.NewBuilder(nil, dnsmessage.Header{
		ID: header.ID, Response: true, Authoritative: true, RecursionDesired: header.RecursionDesired,
	})
	ips, known := r.lookup(strings.ToLower(question.Name.String()))
	if !known {
		builder = dnsmessage.NewBuilder(nil, dnsmessage.Header{
			ID: header.ID, Response: true, Authoritative: true,
			RecursionDesired: header.RecursionDesired, RCode: dnsmessage.RCodeNameError,
		})
	}
	builder.EnableCompression()
	if err := builder.StartQuestions(); err != nil {
		return nil, err
	}
	if err := builder.Question(question); err != nil {
		return nil, err
	}
	if err := builder.StartAnswers(); err != nil {
		return nil, err
	}
	if question.Type == dnsmessage.TypeA {
		for _, ip := range ips {
			resource := dnsmessage.AResource{}
			copy(resource.A[:], ip.To4())
			header := dnsmessage.ResourceHeader{Name: question.Name, Class: dnsmessage.ClassINET, TTL: 5}
			if err := builder.AResource(header, resource); err != nil {
				return nil, err
			}
		}
	}
	return builder.Finish()
}

// lookup reads <service>.<namespace>.svc.<domain>.: its ClusterIP, or a
// headless Service's ready endpoint addresses.
func (r *resolver) lookup(name string) ([]net.IP, bool) {
	suffix := ".svc." + r.domain
	if !strings.HasSuffix(name, suffix) {
		return nil, false
	}
	parts := strings.Split(strings.TrimSuffix(name, suffix), ".")
	if len(parts) != 2 {
		return nil, false
	}
	service, err := r.services.Get(parts[1], parts[0])
	if err != nil {
		return nil, false
	}
	if ip := net.ParseIP(service.Spec.ClusterIP); ip != nil && ip.To4() != nil {
		return []net.IP{ip}, true
	}
	var ips []net.IP
	slices, _ := r.slices(parts[1], parts[0])
	for _, slice := range slices {
		for _, endpoint := range slice.Endpoints {
			if endpoint.Conditions.Ready != nil && !*endpoint.Conditions.Ready {
				continue
			}
			for _, address := range endpoint.Addresses {
				if ip := net.ParseIP(address); ip != nil && ip.To4() != nil {
					ips = append(ips, ip)
				}
			}
		}
	}
	return ips, true
}
