"""What the fixed probe set says about one trained adapter: how far it moved the warmed policy
away from its trained states (drift), and how much of its change at the trained states is
specific to them rather than a push of the labels' action mix everywhere (specificity)."""

from __future__ import annotations

from pydantic import BaseModel, Field

from teachable.records.estimate import Estimate


class AdapterProbe(BaseModel):
    """Drift and specificity of one adapter against the warmed student, each with its interval
    and n; `n_probes` and `n_trained` are the two sets specificity rests on."""

    drift: Estimate = Field(
        description="mean KL(warmed || trained) over the actions per probe state"
    )
    expert_change: Estimate = Field(description="mean change of log pi(a*) at the probe states")
    target_change: Estimate = Field(
        description="mean change of log pi(target) at the trained states"
    )
    specificity: Estimate = Field(
        description="target_change minus the mean change of log pi of the same targets at the "
        "probe states: 0 for a pure push of the labels' action mix"
    )
    n_probes: int
    n_trained: int
