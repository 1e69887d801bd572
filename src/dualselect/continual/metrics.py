"""Continual-learning metrics from the accuracy matrix (Lopez-Paz & Ranzato 2017, GEM).

``R[i][j]``: test accuracy on task j after training stage i (i = 1..T), with row 0 the model
before any stage (``b_j`` of the paper: here the aligned base model, not a random one).

* ``acc_final``   = 1/T sum_j R[T][j] (ACC, average final accuracy);
* ``bwt``         = 1/(T-1) sum_{j<T} (R[T][j] - R[j][j]) (backward transfer: < 0 is forgetting);
* ``fwt``         = 1/(T-1) sum_{j>1} (R[j-1][j] - R[0][j]) (forward transfer);
* ``forgetting``  = 1/(T-1) sum_{j<T} (max_{j<=l<T} R[l][j] - R[T][j]) (Chaudhry et al. 2018);
* ``plasticity``  = 1/T sum_j R[j][j] (accuracy on each task just after learning it).
"""

from __future__ import annotations


def continual_metrics(R: list[list[float]]) -> dict[str, float]:
    """The metrics above from ``R`` ((T+1) rows x T columns, row 0 = before any stage)."""
    T = len(R) - 1
    if T < 2 or any(len(row) != T for row in R):
        raise ValueError(
            f"R must have T+1 rows of T columns with T >= 2, got {len(R)} rows of {[len(r) for r in R]}"
        )
    return {
        "acc_final": sum(R[T]) / T,
        "bwt": sum(R[T][j] - R[j + 1][j] for j in range(T - 1)) / (T - 1),
        "fwt": sum(R[j][j] - R[0][j] for j in range(1, T)) / (T - 1),
        "forgetting": sum(max(R[s][j] for s in range(j + 1, T)) - R[T][j] for j in range(T - 1)) / (T - 1),
        "plasticity": sum(R[j + 1][j] for j in range(T)) / T,
    }
