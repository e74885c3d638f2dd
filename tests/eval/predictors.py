"""A predictor for runner tests: squares a sample's number, and can be made to die part-way."""

from __future__ import annotations

from collections.abc import Callable


class Killed(RuntimeError):
    """Stands for a run killed in the middle."""


def squares(calls: list[str], kill_after: int | None = None) -> Callable[[str], dict]:
    """``{"value": n**2}`` for sample ``"s<n>"``; appends each sample to ``calls``; raises ``Killed`` once
    ``kill_after`` samples were predicted."""

    def predict(sample: str) -> dict:
        if kill_after is not None and len(calls) == kill_after:
            raise Killed(sample)
        calls.append(sample)
        return {"value": int(sample[1:]) ** 2}

    return predict
