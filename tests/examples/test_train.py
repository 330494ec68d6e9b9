"""examples/train.py and examples/evaluate.py as a user runs them: training, files, resume, SIGTERM, DDP, errors."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import evaluate as evaluate_script
import pytest
import torch
import train as train_script
from tiny_run import EXAMPLES, TINY

from panoptic_eval import pq_compute

CONFIG = str(EXAMPLES / "configs" / "panoptic_deeplab_synthetic.yaml")


def tiny_args(data: Path, out: Path, *extra: str) -> list[str]:
    return ["--config", CONFIG, "--output-dir", str(out), *TINY, f"data.root={data}", *extra]


def run_script(script: str, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, str(EXAMPLES / script), *args], capture_output=True, text=True,
                          timeout=timeout, env=env)  # fmt: skip


def weights(path: Path) -> dict[str, torch.Tensor]:
    return torch.load(path, map_location="cpu", weights_only=True)["model"]


def test_train_then_evaluate_writes_every_file(tiny_data, tmp_path):
    out = tmp_path / "run"
    assert train_script.main(tiny_args(tiny_data, out, "solver.max_iter=3", "solver.checkpoint_period=2")) == 0
    for name in ("config.yaml", "last.pt", "model_final.pt", "model_best.pt", "metrics.json", "metrics.jsonl"):
        assert (out / name).is_file(), name
    assert len(list((out / "vis").glob("*.png"))) == 2
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["iteration"] for r in records if r["type"] == "train"] == [1, 2, 3]
    assert all(r["loss"] == r["loss"] for r in records if r["type"] == "train")
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics) >= {"All", "Things", "Stuff", "per_class"}
    assert torch.load(out / "last.pt", weights_only=True)["iteration"] == 3
    assert set(torch.load(out / "model_final.pt", weights_only=True)) == {"model"}

    ev = tmp_path / "eval"
    code = evaluate_script.main(["--config", CONFIG, "--weights", str(out / "model_final.pt"), "--output-dir", str(ev),
                                 *TINY, f"data.root={tiny_data}"])  # fmt: skip
    assert code == 0
    assert len(list((ev / "predictions").glob("*.png"))) == 2
    # The report computed in the pass equals panoptic-eval on the written files.
    from_files = pq_compute(tiny_data / "annotations" / "panoptic_val.json", ev / "predictions.json",
                            tiny_data / "panoptic_val", ev / "predictions")  # fmt: skip
    in_pass = json.loads((ev / "metrics.json").read_text())
    for group in ("All", "Things", "Stuff"):
        assert from_files[group]["pq"] == pytest.approx(in_pass[group]["pq"], abs=1e-12)
    assert in_pass == json.loads((out / "metrics.json").read_text())  # same weights, same numbers


class StopAfter:
    """A preemption whose flag rises after ``n`` iterations (what SIGTERM does mid-run)."""

    def __init__(self, n: int) -> None:
        self.n, self.reads = n, 0

    @property
    def requested(self) -> bool:
        self.reads += 1
        return self.reads >= self.n


def test_stop_and_resume_equals_uninterrupted_run(tiny_data, tmp_path, monkeypatch):
    common = ("solver.max_iter=5", "solver.checkpoint_period=100", "test.eval_period=0", "model.aspp_dropout=0.1")
    assert train_script.main(tiny_args(tiny_data, tmp_path / "full", *common)) == 0
    monkeypatch.setattr(train_script, "Preemption", lambda: StopAfter(2))
    assert train_script.main(tiny_args(tiny_data, tmp_path / "split", *common)) == 0
    assert not (tmp_path / "split" / "model_final.pt").exists()
    assert torch.load(tmp_path / "split" / "last.pt", weights_only=True)["iteration"] == 2
    monkeypatch.setattr(train_script, "Preemption", lambda: StopAfter(10**9))
    assert train_script.main([*tiny_args(tiny_data, tmp_path / "split", *common), "--resume"]) == 0
    full, split = weights(tmp_path / "full" / "model_final.pt"), weights(tmp_path / "split" / "model_final.pt")
    assert full.keys() == split.keys()
    for key in full:
        assert torch.equal(full[key], split[key]), key
    full_opt = torch.load(tmp_path / "full" / "last.pt", weights_only=True)["optimizer"]["state"]
    split_opt = torch.load(tmp_path / "split" / "last.pt", weights_only=True)["optimizer"]["state"]
    assert all(torch.equal(full_opt[k]["exp_avg"], split_opt[k]["exp_avg"]) for k in full_opt)


def test_sigterm_writes_last_and_resume_completes(tiny_data, tmp_path):
    out = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    args = tiny_args(tiny_data, out, "solver.max_iter=400", "solver.checkpoint_period=1000", "test.eval_period=0")
    proc = subprocess.Popen([sys.executable, str(EXAMPLES / "train.py"), *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)  # fmt: skip
    deadline = time.monotonic() + 240
    while not (out / "metrics.jsonl").exists() or not (out / "metrics.jsonl").read_text().strip():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 0, stderr
    assert "Traceback" not in stderr
    assert "continue with --resume" in stdout
    stopped = torch.load(out / "last.pt", weights_only=True)["iteration"]
    assert 1 <= stopped < 400
    resumed = run_script("train.py", *tiny_args(tiny_data, out, "solver.max_iter=" + str(stopped + 2),
                                                "test.eval_period=0"), "--resume")  # fmt: skip
    assert resumed.returncode == 0, resumed.stderr
    assert (out / "model_final.pt").is_file()


def test_two_process_gloo_torchrun(tiny_data, tmp_path):
    out = tmp_path / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29517",
           str(EXAMPLES / "train.py"), *tiny_args(tiny_data, out, "solver.max_iter=2")]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["All"]["n"] >= 1
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["iteration"] for r in records if r["type"] == "train"] == [1, 2]  # one writer: rank 0


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("solver.max_itr=3", "unknown key 'solver.max_itr'"),
        ("solver.max_iter=abc", "solver.max_iter: expected an integer"),
        ("model.stuf_area=3", "unknown key 'model.stuf_area'"),
        ("model.stuff_area=[1]", "model.stuff_area: expected an integer"),
        ("solver.optimizer=lamb", "solver.optimizer: 'lamb' is not one of"),
        ("dataloader.batch_size=0", "dataloader.batch_size: must be > 0"),
        ("solver.max_iter", "expected key=value"),
    ],
)
def test_config_errors_exit_2_with_one_line(tiny_data, tmp_path, capsys, override, message):
    assert train_script.main(tiny_args(tiny_data, tmp_path / "bad", override)) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err, err
    assert not (tmp_path / "bad").exists()


def test_missing_dataset_names_the_folder_and_how_to_prepare_it(tmp_path, capsys):
    args = ["--config", str(EXAMPLES / "configs" / "panoptic_deeplab_coco.yaml"), "--output-dir", str(tmp_path / "o"),
            f"data.root={tmp_path / 'nowhere'}", "train.device=cpu"]  # fmt: skip
    assert train_script.main(args) == 2
    err = capsys.readouterr().err
    assert str(tmp_path / "nowhere") in err and "README" in err and len(err.strip().splitlines()) == 1


def test_bad_checkpoints_are_refused_and_nothing_is_overwritten(tiny_data, tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    (out / "last.pt").write_bytes(b"not a checkpoint")
    before = (out / "last.pt").stat().st_mtime_ns
    assert train_script.main(tiny_args(tiny_data, out, "solver.max_iter=1")) == 2
    assert "already holds a run" in capsys.readouterr().err
    assert train_script.main([*tiny_args(tiny_data, out, "solver.max_iter=1"), "--resume"]) == 2
    assert "not a readable checkpoint" in capsys.readouterr().err
    assert (out / "last.pt").stat().st_mtime_ns == before and (out / "last.pt").read_bytes() == b"not a checkpoint"
    foreign = tmp_path / "foreign.pt"
    torch.save({"model": {"fc.weight": torch.zeros(3, 3)}}, foreign)
    code = evaluate_script.main(["--config", CONFIG, "--weights", str(foreign), "--output-dir", str(tmp_path / "ev"),
                                 *TINY, f"data.root={tiny_data}"])  # fmt: skip
    assert code == 2
    err = capsys.readouterr().err
    assert "missing key" in err and str(foreign) in err
    assert evaluate_script.main(["--config", CONFIG, "--weights", str(tmp_path / "none.pt"), "--output-dir",
                                 str(tmp_path / "ev")]) == 2  # fmt: skip
    assert "file not found" in capsys.readouterr().err


def test_compare_table(tiny_data, tmp_path, capsys):
    import compare as compare_script

    out = tmp_path / "cmp"
    code = compare_script.main(
        ["--output-dir", str(out), *TINY, f"data.root={tiny_data}", "solver.max_iter=2",
         "--methods", "panoptic_deeplab"]
    )  # fmt: skip
    assert code == 0
    rows = json.loads((out / "comparison.json").read_text())
    assert [r["method"] for r in rows] == ["panoptic_deeplab"]
    row = rows[0]
    assert row["parameters"] > 1e6 and row["train_images_per_s"] > 0 and row["inference_ms"] > row["postprocess_ms"] > 0
    assert 0 <= row["pq_All"] <= 100
    assert "| panoptic_deeplab |" in (out / "comparison.md").read_text()
    assert "PQ_th" in capsys.readouterr().out


def test_sigterm_under_torchrun_stops_every_rank(tiny_data, tmp_path):
    """A scheduler signalling the workers: every rank stops at the same iteration, rank 0 writes last.pt."""
    out = tmp_path / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    args = tiny_args(tiny_data, out, "solver.max_iter=500", "test.eval_period=0")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29519",
           str(EXAMPLES / "train.py"), *args]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    deadline = time.monotonic() + 240
    while not (out / "metrics.jsonl").exists() or not (out / "metrics.jsonl").read_text().strip():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline
        time.sleep(0.2)
    workers = subprocess.run(["pgrep", "-P", str(proc.pid)], capture_output=True, text=True).stdout.split()
    assert len(workers) == 2, workers
    for pid in workers:
        os.kill(int(pid), signal.SIGTERM)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 0, stderr[-3000:]
    assert "Traceback" not in stderr
    assert stdout.count("continue with --resume") == 1  # rank 0 only
    assert 1 <= torch.load(out / "last.pt", weights_only=True)["iteration"] < 500
