"""What a locustfile imports so that Locust follows the run plan: ``PlanShape`` (Locust
picks up a shape class from the locustfile's names). The scenario-facing name of
``loadtest.harness.shape``."""

from loadtest.harness.shape import PlanShape

__all__ = ["PlanShape"]
