"""Hardening (issue 18): hostile output paths, impossible GT, huge numbers and images, signals.

Each case ends in a correct result or one line naming the file, image or argument (CLI exit 2,
API PanopticEvalError), with nothing replaced and nothing left behind.
"""

import json
import os
import signal
import stat
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
from helpers import gt_seg, write_pair
from PIL import Image

from panoptic_eval import PanopticEvalError, PanopticQuality, pq_compute, write_id_png, write_json_atomic
from panoptic_eval.cli import main
from panoptic_eval.formats import read_id_png

CATS = [{"id": 1, "isthing": 1}, {"id": 2, "isthing": 0}]
SEGS = [{"id": 1, "category_id": 1}, {"id": 2, "category_id": 2}]


def ids_4x4():
    ids = np.zeros((4, 4), np.int64)
    ids[:2], ids[2:] = 1, 2
    return ids


def small_set(tmp_path, gt_segments=None, n_images=1):
    ids = ids_4x4().astype(np.uint32)
    segs = gt_segments or [gt_seg(1, 1, 8), gt_seg(2, 10, 8)]
    pred = [{"id": 1, "category_id": 1}, {"id": 2, "category_id": 10}]
    return write_pair(tmp_path, [(ids, segs, ids, pred)] * n_images)


def run_cli(p, *extra):
    return main(["--gt-json", str(p["gt_json"]), "--pred-json", str(p["pred_json"]), "--quiet", *extra])


def leftovers(folder):
    return sorted(f for f in os.listdir(folder) if f.endswith(".tmp"))


# --- atomic writers: symlinks, special files, modes, bad names --------------------------------


def test_writer_follows_symlink_and_keeps_the_link(tmp_path):
    target = tmp_path / "real.json"
    target.write_text("{}")
    link = tmp_path / "link.json"
    link.symlink_to(target)
    write_json_atomic(link, {"a": 1})
    assert link.is_symlink() and os.readlink(link) == str(target)
    assert json.loads(target.read_text()) == {"a": 1}
    write_id_png(tmp_path / "png_link.png", np.ones((2, 2), np.uint32))  # plain path still works
    (tmp_path / "img.png").write_bytes(b"")
    (tmp_path / "img_link.png").symlink_to(tmp_path / "img.png")
    write_id_png(tmp_path / "img_link.png", np.full((2, 3), 7, np.uint32))
    assert (tmp_path / "img_link.png").is_symlink()
    assert read_id_png(tmp_path / "img.png").tolist() == [[7, 7, 7]] * 2
    assert leftovers(tmp_path) == []


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs on this platform")
def test_writer_refuses_fifo_folder_and_device(tmp_path):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    for path, kind in ((fifo, "not a regular file"), (tmp_path, "a folder"), ("/dev/null", "not a regular file")):
        with pytest.raises(PanopticEvalError, match=kind):
            write_json_atomic(path, {"a": 1})
    assert stat.S_ISFIFO(os.stat(fifo).st_mode) and stat.S_ISCHR(os.stat("/dev/null").st_mode)
    with pytest.raises(PanopticEvalError, match="not a regular file"):
        write_id_png(fifo, np.ones((2, 2), np.uint32))
    assert leftovers(tmp_path) == []


def test_writer_refuses_empty_and_folder_names(tmp_path):
    with pytest.raises(PanopticEvalError, match="empty"):
        write_json_atomic("", {})
    with pytest.raises(PanopticEvalError, match="names a folder"):
        write_json_atomic(f"{tmp_path}/new/", {})
    with pytest.raises(PanopticEvalError, match="does not exist"):
        write_json_atomic(tmp_path / "missing" / "out.json", {})
    assert not (tmp_path / "new").exists() and leftovers(tmp_path) == []


def test_writer_mode_follows_umask_and_keeps_existing_mode(tmp_path):
    old = os.umask(0o027)
    try:
        write_json_atomic(tmp_path / "new.json", {})
        write_id_png(tmp_path / "new.png", np.ones((2, 2), np.uint32))
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(tmp_path / "new.json").st_mode) == 0o640
    assert stat.S_IMODE(os.stat(tmp_path / "new.png").st_mode) == 0o640
    existing = tmp_path / "kept.json"
    existing.write_text("{}")
    existing.chmod(0o604)
    write_json_atomic(existing, {"b": 2})
    assert stat.S_IMODE(os.stat(existing).st_mode) == 0o604 and json.loads(existing.read_text()) == {"b": 2}


def test_writer_refuses_non_finite_numbers(tmp_path):
    out = tmp_path / "x.json"
    out.write_text('{"old": 1}')
    for bad, key in (({"All": {"pq": float("inf")}}, "All.pq"), ({"v": [1.0, np.float64("nan")]}, "v.1")):
        with pytest.raises(PanopticEvalError, match=key.replace(".", r"\.")):
            write_json_atomic(out, bad)
    assert out.read_text() == '{"old": 1}' and leftovers(tmp_path) == []


def test_cli_output_errors_before_evaluating(tmp_path, capsys):
    p = small_set(tmp_path)
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    for out in ("", f"{tmp_path}/sub/", str(tmp_path), str(fifo)):
        assert run_cli(p, "--output", out) == 2
        err = capsys.readouterr().err
        assert err.startswith("panoptic-eval: error: output path") and err.count("\n") == 1
    assert stat.S_ISFIFO(os.stat(fifo).st_mode) and not (tmp_path / "sub").exists()


# --- impossible GT and out-of-range numbers ---------------------------------------------------


@pytest.mark.parametrize("area", [0, -3])
def test_gt_area_not_positive_is_refused(tmp_path, capsys, area):
    p = small_set(tmp_path, [gt_seg(1, 1, area), gt_seg(2, 10, 8)])
    out = tmp_path / "out.json"
    assert run_cli(p, "--output", str(out)) == 2
    err = capsys.readouterr().err
    assert "image_id 0" in err and "segment 1" in err and err.count("\n") == 1
    assert not out.exists()
    with pytest.raises(PanopticEvalError, match="segment 1"):
        pq_compute(p["gt_json"], p["pred_json"])


def test_gt_area_zero_without_pixels_is_a_false_negative_as_in_panopticapi(tmp_path):
    p = small_set(tmp_path, [gt_seg(1, 1, 8), gt_seg(2, 10, 8), gt_seg(9, 1, 0)])
    result = pq_compute(p["gt_json"], p["pred_json"])
    # person: 1 TP (IoU 1) + 1 FN -> PQ 1 / (1 + 0.5); sky PQ 1.
    assert result["per_class"][1]["pq"] == pytest.approx(1 / 1.5) and result["per_class"][10]["pq"] == 1.0


@pytest.mark.parametrize(
    ("side", "key", "value"),
    [("gt", "area", 2**63), ("gt", "id", 2**63), ("pred", "id", 2**64 + 1), ("gt", "id", -(2**63) - 1)],
)
def test_numbers_beyond_int64_are_refused(tmp_path, capsys, side, key, value):
    p = small_set(tmp_path)
    path = p["gt_json"] if side == "gt" else p["pred_json"]
    data = json.loads(path.read_text())
    data["annotations"][0]["segments_info"][0][key] = value
    path.write_text(json.dumps(data))
    assert run_cli(p) == 2
    err = capsys.readouterr().err
    assert "2**63" in err and "image_id 0" in err and err.count("\n") == 1


def test_nul_bytes_in_names_are_refused(tmp_path, capsys):
    p = small_set(tmp_path)
    data = json.loads(p["gt_json"].read_text())
    data["annotations"][0]["file_name"] = "0\x00.png"
    p["gt_json"].write_text(json.dumps(data))
    assert run_cli(p) == 2
    assert "NUL" in capsys.readouterr().err
    assert main(["--gt-json", "gt\x00.json", "--pred-json", str(p["pred_json"]), "--quiet"]) == 2
    assert "NUL" in capsys.readouterr().err


def test_deeply_nested_json_is_refused(tmp_path, capsys):
    p = small_set(tmp_path)
    p["pred_json"].write_text("[" * 200_000 + "]" * 200_000)
    assert run_cli(p) == 2
    err = capsys.readouterr().err
    assert "nested too deeply" in err and str(p["pred_json"]) in err


# --- decompression-bomb limit: refuse only images whose size the JSON does not announce ---------


def test_big_png_needs_the_size_its_json_announces(tmp_path, monkeypatch):
    ids = np.zeros((16, 16), np.uint32)
    ids[:8], ids[8:] = 1, 2
    p = write_pair(tmp_path, [(ids, [gt_seg(1, 1, 128), gt_seg(2, 10, 128)], ids,
                               [{"id": 1, "category_id": 1}, {"id": 2, "category_id": 10}])])
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)  # Pillow refuses above 2 x 100 < 256 pixels
    args = (p["gt_json"], p["pred_json"], p["gt_folder"], p["pred_folder"])
    with pytest.raises(PanopticEvalError, match=r"decompression-bomb.*gives no size"):
        pq_compute(*args)
    data = json.loads(p["gt_json"].read_text())
    data["images"] = [{"id": 0, "file_name": "0.jpg", "height": 16, "width": 16}]
    p["gt_json"].write_text(json.dumps(data))
    assert pq_compute(*args)["All"]["pq"] == 1.0
    data["images"][0]["width"] = 17
    p["gt_json"].write_text(json.dumps(data))
    with pytest.raises(PanopticEvalError, match="says 17x16"):
        pq_compute(*args)
    data["images"] = [{"id": 0, "height": 16, "width": 16}, {"id": 0, "height": 16, "width": 17}]
    p["gt_json"].write_text(json.dumps(data))
    with pytest.raises(PanopticEvalError, match="gives no size"):  # ambiguous: no size announced
        pq_compute(*args)
    # A prediction PNG above the limit must have the GT's size.
    data["images"] = [{"id": 0, "file_name": "0.jpg", "height": 16, "width": 16}]
    p["gt_json"].write_text(json.dumps(data))
    write_id_png(p["pred_folder"] / "0.png", np.ones((16, 20), np.uint32))
    with pytest.raises(PanopticEvalError, match=r"prediction.*20x16 \(WxH\) is above"):
        pq_compute(*args)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", None)  # no limit, as in Pillow
    with pytest.raises(PanopticEvalError, match="is 20x16"):  # the ordinary size mismatch
        pq_compute(*args)


# --- memory and signals ------------------------------------------------------------------------


def test_out_of_memory_says_what_to_lower(tmp_path, monkeypatch):
    import panoptic_eval.evaluation as evaluation

    def no_memory(*args, **kwargs):
        raise MemoryError

    p = small_set(tmp_path)
    monkeypatch.setattr(evaluation, "read_packed_png", no_memory)
    with pytest.raises(PanopticEvalError, match=r"image_id 0: out of memory.*lower workers \(now 1"):
        pq_compute(p["gt_json"], p["pred_json"], workers=1)


SLOW_CLI = """
import signal, sys, time
# As in a terminal: a parent may have started us with SIGINT ignored (pytest-xdist workers do).
signal.signal(signal.SIGINT, signal.default_int_handler)
import panoptic_eval.evaluation as ev
real = ev.read_packed_png
def slow(*args, **kwargs):
    time.sleep(0.15)
    return real(*args, **kwargs)
ev.read_packed_png = slow
from panoptic_eval.cli import main
print("started", flush=True)
sys.exit(main(sys.argv[1:]))
"""


def test_ctrl_c_during_parallel_evaluation_exits_cleanly(tmp_path):
    p = small_set(tmp_path, n_images=40)  # 40 images x 0.3 s over 2 threads: ~6 s if not interrupted
    out = tmp_path / "out.json"
    proc = subprocess.Popen(
        [sys.executable, "-c", SLOW_CLI, "--gt-json", str(p["gt_json"]), "--pred-json", str(p["pred_json"]),
         "--workers", "2", "--output", str(out)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert proc.stdout.readline() == "started\n"
    time.sleep(1.0)
    sent = time.monotonic()
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130
    assert err == "panoptic-eval: interrupted\n"  # one line, no traceback
    assert time.monotonic() - sent < 3.0  # only the images being counted finish
    assert not out.exists() and leftovers(tmp_path) == []


# --- PanopticQuality.update with unsigned torch and numpy maps ---------------------------------


@pytest.mark.parametrize("dtype", [torch.uint16, torch.uint32, torch.uint64])
def test_update_accepts_unsigned_torch_maps(dtype):
    ids = ids_4x4()
    ids[0, 0] = 7  # an unlisted GT id (counted as unlabelled)
    want = PanopticQuality(CATS)
    want.update(torch.from_numpy(ids), SEGS, torch.from_numpy(ids_4x4()), SEGS)
    got = PanopticQuality(CATS)
    got.update(torch.from_numpy(ids).to(dtype), SEGS, torch.from_numpy(ids_4x4()).to(dtype), SEGS)
    assert got.compute() == want.compute() and want.compute()["All"]["pq"] == pytest.approx(0.9375)


def test_update_with_ids_beyond_int64():
    small = ids_4x4()
    small[0, 0] = 7
    big = ids_4x4().astype(np.uint64)
    big[0, 0] = 2**63 + 5
    want = PanopticQuality(CATS)
    want.update(small, SEGS, ids_4x4(), SEGS)
    got = PanopticQuality(CATS)
    got.update(big, SEGS, ids_4x4().astype(np.uint64), SEGS)  # unlisted GT id, as 7 above
    assert got.compute() == want.compute()
    with pytest.raises(PanopticEvalError, match=str(2**63 + 5)):  # named exactly, not wrapped
        got.update(ids_4x4().astype(np.uint64), SEGS, big, SEGS)
    with pytest.raises(PanopticEvalError, match=r"gt_ids: uint64 values >= 2\*\*63"):
        got.update(torch.from_numpy(big), SEGS, torch.from_numpy(ids_4x4()).to(torch.uint64), SEGS)
