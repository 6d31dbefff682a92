"""scalecheck: load-test a web app scaled out behind a load balancer and check what it did."""
