"""Ops that mirror the CLI: load a run, reconstruct files, sample images."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ul_engine.worker.session import Session, op


@op("load")
def load(session: Session, request: dict[str, Any]) -> dict[str, Any]:
    loaded = session.run(request["run"], request.get("checkpoint"))
    return {"run": loaded.run.id, "stage": loaded.run.stage, "checkpoint_step": loaded.checkpoint_step}


@op("reconstruct")
def reconstruct(session: Session, request: dict[str, Any]) -> dict[str, Any]:
    from ul_engine.inference.files import expand_inputs
    from ul_engine.inference.reconstruct import Reconstructor, flat_result, reconstruct_many

    reconstructor = Reconstructor(session.run(request["run"]), session.store)
    params = reconstructor.default_params(decoder_steps=request.get("decoder_steps"), sampler=request.get("sampler"),
                                          seed=int(request.get("seed", 0)))  # fmt: skip
    entries = reconstruct_many(reconstructor, expand_inputs(request["inputs"]), params, out_dir=Path(request["out"]))
    return {"results": [flat_result(e) for e in entries]}


@op("sample")
def sample(session: Session, request: dict[str, Any]) -> dict[str, Any]:
    from ul_engine.inference.sample import sample_files

    outputs = sample_files(
        session.store,
        request["run"],
        Path(request["out"]),
        n=int(request.get("n", 4)),
        seed=int(request.get("seed", 0)),
        base_steps=request.get("base_steps"),
        decoder_steps=request.get("decoder_steps"),
        sampler=request.get("sampler"),
        guidance=request.get("guidance"),
        class_label=request.get("class"),
    )
    return {"outputs": outputs}
