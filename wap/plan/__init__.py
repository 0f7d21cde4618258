"""Deployment plans: a cluster spec in, every resource to create out. Pure: no I/O, no clock."""

from wap.plan.plan import Plan, make_plan
from wap.plan.spec import ClusterSpec, SpecError

__all__ = ["ClusterSpec", "Plan", "SpecError", "make_plan", "plan_from_dict"]


def plan_from_dict(data: object) -> Plan:
    """Validate a spec given as plain data and plan it; SpecError names the bad field."""
    return make_plan(ClusterSpec.from_dict(data))
