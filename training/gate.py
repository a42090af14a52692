"""The quality gate: when a candidate may become the serving champion, and why (or why not).

Pure logic, so its rules are tested without MLflow: the candidate must beat the best baseline
by the margin, and must not be worse than the current champion on the same validation rows.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field


@dataclass(frozen=True)
class GateDecision:
    promote: bool
    reasons: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return asdict(self)


def decide(
    candidate_mae: float,
    best_baseline: tuple[str, float],
    margin: float,
    champion: tuple[str, float] | None,
    champion_unscored: str | None = None,
) -> GateDecision:
    """``best_baseline`` and ``champion`` are (name, MAE) on the candidate's validation rows.
    ``champion_unscored`` says why the champion could not be scored on those rows (e.g. it reads
    another feature service); ``champion`` is then (version, NaN) and the champion stays: a
    candidate that cannot be compared with it is not promoted automatically."""
    name, baseline_mae = best_baseline
    needed = baseline_mae * (1 - margin)
    beats = candidate_mae <= needed
    reasons = [
        f"MAE {candidate_mae:.4f} {'<=' if beats else '>'} {needed:.4f}, the best baseline ({name}, "
        f"{baseline_mae:.4f}) less the {margin:.0%} margin"
    ]
    if champion is None:
        reasons.append("no champion yet")
        return GateDecision(beats, reasons)
    version, champion_mae = champion
    if champion_unscored is not None:
        reasons.append(
            f"the champion (version {version}) cannot be scored on this validation window: {champion_unscored}; "
            "it stays champion (promote by hand after comparing them)"
        )
        return GateDecision(False, reasons)
    holds = candidate_mae <= champion_mae
    reasons.append(
        f"MAE {candidate_mae:.4f} {'<=' if holds else '>'} {champion_mae:.4f}, the champion's "
        f"(version {version}) on the same validation window"
    )
    return GateDecision(beats and holds, reasons)
