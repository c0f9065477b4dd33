"""The filtering functions of synthetic data generation, on known scores."""

from __future__ import annotations

from ggstack.synthetic.filters import FILTERS

SCORES = [0.2, 0.9, 0.5, 0.1]


def test_each_filter_keeps_what_it_says() -> None:
    assert FILTERS["none"](SCORES) == [1, 2, 0, 3]
    assert FILTERS["top_k"](SCORES) == [1, 2]
    assert FILTERS["top_p"](SCORES) == [1, 2, 0]  # 1.6 of 1.7 is past 90% only with the third
    assert FILTERS["top_k_top_p"](SCORES) == [1, 2]
    assert FILTERS["sigmoid"](SCORES) == [1, 2]  # the mean is 0.425
    assert FILTERS["random"](SCORES)[0] in range(4) and len(FILTERS["random"](SCORES)) == 1
    assert FILTERS["sigmoid"]([0.3, 0.3]) == [0, 1] and FILTERS["top_p"]([]) == []
