"""Tiny tasks over ``Dict`` datasets for tests, benchmarks and examples.

They are importable by path from every worker process.  ``fail_on`` and ``crash_on``
inject failures for a list of data IDs (a raised error, or a worker process that dies),
so the executors' failure handling can be exercised on real repositories.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from .connections import Input, Output, PrerequisiteInput
from .task import PipelineTask, TaskConfig

VD = ("instrument", "visit", "detector")


class FaultConfig(TaskConfig):
    """Failure injection: key/values matched against an input (a payload or a data ID):
    where one matches, the task raises (``fail_on``) or its process dies (``crash_on``)."""

    fail_on: list[dict[str, Any]] = []
    crash_on: list[dict[str, Any]] = []


def _matches(data_id: Mapping[str, Any], patterns: list[dict[str, Any]]) -> bool:
    return any(all(data_id.get(k) == v for k, v in p.items()) for p in patterns)


class FaultyTask(PipelineTask):
    """Base of the test tasks: ``check`` raises or exits for the configured data IDs."""

    Config = FaultConfig

    def check(self, data_id: Mapping[str, Any]) -> None:
        if _matches(data_id, self.config.crash_on):
            os._exit(17)
        if _matches(data_id, self.config.fail_on):
            raise RuntimeError(f"injected failure for {dict(data_id)}")


class ScaleConfig(FaultConfig):
    factor: float = 2.0


class ScaleTask(FaultyTask):
    """metrics (visit, detector) -> metricsA: every value times ``factor``."""

    dimensions = VD
    inputs = {"metrics": Input(name="metrics", storage_class="Dict", dimensions=VD)}
    outputs = {"scaled": Output(name="metricsA", storage_class="Dict", dimensions=VD)}
    Config = ScaleConfig

    def run(self, metrics: dict[str, Any]) -> dict[str, Any]:
        self.check(metrics)  # test payloads carry their visit and detector
        self.log.info("scaling %d values by %s", len(metrics), self.config.factor)
        return {"scaled": {k: (v * self.config.factor if isinstance(v, (int, float)) else v)
                           for k, v in metrics.items()}}


class VisitSummaryTask(FaultyTask):
    """Gather every metricsA of a visit into visitSummary (visit): count and sums."""

    dimensions = ("instrument", "visit")
    inputs = {"scaled": Input(name="metricsA", storage_class="Dict", dimensions=VD, multiple=True)}
    outputs = {"summary": Output(name="visitSummary", storage_class="Dict", dimensions=("instrument", "visit"))}

    def run(self, scaled: dict[Any, dict[str, Any]]) -> dict[str, Any]:
        first = next(iter(scaled))
        self.check(first)
        sums: dict[str, float] = {}
        for values in scaled.values():
            for k, v in values.items():
                if isinstance(v, (int, float)):
                    sums[k] = sums.get(k, 0.0) + v
        return {"summary": {"n": len(scaled), "detectors": sorted(d["detector"] for d in scaled), "sums": sums}}


class CalibratedScaleTask(ScaleTask):
    """Like ScaleTask, also reading a per-detector ``bias`` calibration found by the visit's time."""

    prerequisites = {"bias": PrerequisiteInput(name="bias", storage_class="Dict",
                                               dimensions=("instrument", "detector"), is_calibration=True)}

    def run(self, metrics: dict[str, Any], bias: dict[str, Any]) -> dict[str, Any]:  # type: ignore[override]
        out = super().run(metrics)
        out["scaled"]["bias"] = bias.get("level")
        return out


class PatchCountTask(PipelineTask):
    """Gather metricsA overlapping a patch (spatial join) into patchCount (tract, patch)."""

    dimensions = ("skymap", "tract", "patch")
    inputs = {"scaled": Input(name="metricsA", storage_class="Dict", dimensions=VD, multiple=True)}
    outputs = {"count": Output(name="patchCount", storage_class="Dict", dimensions=("skymap", "tract", "patch"))}

    def run(self, scaled: dict[Any, dict[str, Any]]) -> dict[str, Any]:
        return {"count": {"n": len(scaled), "visits": sorted({d["visit"] for d in scaled})}}


class SplitTask(PipelineTask):
    """One-to-many: visitSummary (visit) -> one detectorShare per (visit, detector) of the visit."""

    dimensions = ("instrument", "visit")
    inputs = {"summary": Input(name="visitSummary", storage_class="Dict", dimensions=("instrument", "visit"))}
    outputs = {"shares": Output(name="detectorShare", storage_class="Dict", dimensions=VD, multiple=True)}

    def run(self, summary: dict[str, Any]) -> dict[str, Any]:
        return {"shares": [({"detector": d}, {"share": 1 / summary["n"]}) for d in summary["detectors"]]}


ED = ("instrument", "exposure", "detector")


class RawStatsTask(PipelineTask):
    """raw (exposure, detector) -> rawStats: the image's shape and mean (a cheap task over real raws)."""

    dimensions = ED
    inputs = {"raw": Input(name="raw", storage_class="Image", dimensions=ED)}
    outputs = {"stats": Output(name="rawStats", storage_class="Dict", dimensions=ED)}

    def run(self, raw: Any) -> dict[str, Any]:
        data = raw.data
        return {"stats": {"shape": list(data.shape), "mean": round(float(data.mean()), 6)}}


class ExposureStatsTask(PipelineTask):
    """Gather every rawStats of an exposure into exposureStats (exposure)."""

    dimensions = ("instrument", "exposure")
    inputs = {"stats": Input(name="rawStats", storage_class="Dict", dimensions=ED, multiple=True)}
    outputs = {"summary": Output(name="exposureStats", storage_class="Dict", dimensions=("instrument", "exposure"))}

    def run(self, stats: dict[Any, dict[str, Any]]) -> dict[str, Any]:
        return {"summary": {"detectors": sorted(d["detector"] for d in stats),
                            "mean": round(sum(s["mean"] for s in stats.values()) / len(stats), 6)}}
