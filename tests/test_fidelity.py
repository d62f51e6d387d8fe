"""A FidelityReport is truthy exactly when it passes the gate it carries (issue 17), as ``export.Comparison`` is."""

from __future__ import annotations

import math

import numpy as np
import pytest

from edgeconv.errors import InvalidArgumentError, QuantizationError
from edgeconv.quantize.fidelity import (
    DEFAULT_MIN_AGREEMENT,
    FidelityReport,
    check_gate,
    compare_logits,
    meets_gate,
)


def _logits(agreeing: int, total: int = 10, confident: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Reference and test logits over 4 classes where the first ``agreeing`` samples share the top-1."""
    ref = np.zeros((total, 4))
    ref[np.arange(total), np.arange(total) % 4] = 5.0 if confident else 0.1
    test = ref.copy()
    for i in range(agreeing, total):
        test[i] = np.roll(ref[i], 1)
    return ref, test


def test_truthy_exactly_when_the_gate_passes() -> None:
    ref, test = _logits(5)  # 50% top-1 agreement: the old "any agreement at all" truthiness said True
    report = compare_logits(ref, test)
    assert report.top1_agreement == pytest.approx(0.5) and report.min_agreement == DEFAULT_MIN_AGREEMENT
    assert not report and report.passed is False
    assert compare_logits(ref, test, min_agreement=0.5)
    assert bool(report.judged(0.5)) and not report.judged(0.51)
    assert compare_logits(ref, ref)  # identical logits pass any gate
    none_agree = compare_logits(*_logits(0))
    assert not none_agree and not none_agree.judged(0.0, 0.01)
    assert none_agree.judged(0.0)  # a gate of 0 is passed by anything
    with pytest.raises(InvalidArgumentError, match="--min-agreement 85"):
        report.judged(85)
    with pytest.raises(InvalidArgumentError, match="--min-confident-agreement"):
        compare_logits(ref, test, min_agreement=0.5, min_confident=2.0)


def test_the_confident_gate_counts_and_is_vacuous_without_confident_samples() -> None:
    report = compare_logits(*_logits(9), min_agreement=0.8, min_confident=0.95)
    assert report.confident_samples == 10 and report.confident_agreement == pytest.approx(0.9)
    assert not report and report.judged(0.8, 0.9)
    flat = compare_logits(*_logits(9, confident=False), min_agreement=0.8, min_confident=0.99)
    assert flat.confident_samples == 0 and math.isnan(flat.confident_agreement)
    assert flat  # no confident sample to gate on


@pytest.mark.parametrize("agreement", [0.0, 0.5, 0.65, 0.8, 1.0])
@pytest.mark.parametrize("gate", [0.0, 0.65, 0.8])
def test_bool_check_gate_and_meets_gate_agree(agreement: float, gate: float) -> None:
    report = FidelityReport(100, agreement, 40, agreement, 0.9, 0.05, 20.0)
    judged = report.judged(gate)
    assert bool(judged) == meets_gate(report, gate) == meets_gate(judged) == check_gate(report, gate, force=True)
    assert check_gate(judged, force=True) == bool(judged)  # no gate given: the report's own
    if not judged:
        with pytest.raises(QuantizationError, match="INT8 fidelity below the gate"):
            check_gate(judged)


def test_as_dict_holds_the_measured_figures_only() -> None:
    """The manifest records the gate beside the figures (``int8.gate``); bench rows merge ``as_dict`` into a check whose
    ``passed`` is the export tolerance's: neither may gain gate keys."""
    report = compare_logits(*_logits(8), min_agreement=0.9)
    assert set(report.as_dict()) == {
        "samples",
        "top1_agreement",
        "confident_samples",
        "confident_agreement",
        "top5_overlap",
        "mean_kl",
        "output_sqnr_db",
    }


def test_bench_gate_judges_a_row_check_with_the_artifacts_gate() -> None:
    from edgeconv.bench import Gate

    check = {"passed": True, **compare_logits(*_logits(8, confident=False)).as_dict()}
    check["confident_agreement"] = None  # NaN is written as null in the JSON rows
    assert Gate(0.8, 0.99, "test").passes(check) is True
    assert Gate(0.85, 0.0, "test").passes(check) is False
    assert Gate(0.8, 0.0, "test").passes(None) is None


def test_int8_manifest_keeps_reports_below_the_gate() -> None:
    from edgeconv.quantize.report import Int8Report

    below = compare_logits(*_logits(5), min_agreement=0.8)
    after = compare_logits(*_logits(9), min_agreement=0.8)
    report = Int8Report("onnxruntime", "minmax", after, below, ["features.0"], True, 0.8, before_fallback=below)
    manifest = report.manifest()
    assert manifest["plain_ptq_fidelity"] == below.as_dict()
    assert manifest["fidelity_before_fallback"] == below.as_dict()  # always below the gate: that is why fallback ran


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.float16, np.int32])
def test_sqnr_db_is_the_float64_ratio_for_any_input_type(dtype: type) -> None:
    """``sqnr_db`` sums in float64 without converting the tensors: the same figure as the float64 formula."""
    from edgeconv.quantize.fidelity import sqnr_db

    rng = np.random.default_rng(0)
    reference = (rng.standard_normal((4, 3, 50, 50)) * 100).astype(dtype)
    test = (reference + rng.standard_normal(reference.shape) * 3).astype(dtype)
    r, t = reference.astype(np.float64), test.astype(np.float64)
    expected = 10 * np.log10(np.sum(r * r) / np.sum((r - t) ** 2))
    assert sqnr_db(reference, test) == pytest.approx(expected, rel=1e-9)
    assert sqnr_db(reference, reference) == float("inf")
