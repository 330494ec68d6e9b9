"""Train a panoptic model: single process or ``torchrun`` (DDP), resumable, evaluated periodically.

    python examples/train.py --config examples/configs/panoptic_deeplab_synthetic.yaml --output-dir DIR \\
        [--resume] [dotted.key=value ...]
    torchrun --nproc_per_node 8 examples/train.py --config ... --output-dir DIR

DIR receives ``config.yaml`` (the resolved config), ``last.pt`` (every
``solver.checkpoint_period`` iterations, on SIGTERM and at the end; atomic), ``model_best.pt``,
``model_final.pt`` (``{"model": state_dict}``), ``metrics.jsonl`` (one line per log step and
per evaluation), ``metrics.json`` (the last evaluation, pq_compute structure) and ``vis/``
(overlays of a few val images). ``--resume`` continues from ``last.pt`` exactly: the data order,
the augmentations and every random state are functions of the seed and the iteration, so a run
stopped and resumed on the CPU ends with the same weights, bit for bit, as an uninterrupted one.
Errors in the config, the data or a checkpoint exit with status 2 and one line.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import torch
import torch.distributed as dist
import yaml
from common import (
    ConfigError,
    ExperimentConfig,
    build,
    eval_loader,
    evaluate_model,
    load_checkpoint,
    load_experiment,
    load_model_state,
    open_dataset,
    prepare_dataset,
    save_atomic,
    train_transforms,
)
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Dataset, Sampler
from tqdm import tqdm
from visualize import write_overlay

from panoptic_core.data import CocoPanopticDataset, PanopticCollate
from panoptic_eval import write_json_atomic
from panoptic_eval.cli import format_table


class SeededSamples(Dataset):
    """Items ``(index, seed)``: ``dataset[index]`` with torch's RNG seeded by ``seed`` for its augmentations.

    The caller's RNG state is left untouched (``fork_rng``), so loading in the main process
    (``num_workers=0``) does not disturb the model's random streams.
    """

    def __init__(self, dataset: CocoPanopticDataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: tuple[int, int]):
        index, seed = key
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return self.dataset[index]


class IterationBatches(Sampler):
    """This process's batch of every iteration in ``[start, stop)``, a pure function of (seed, iteration).

    The global stream visits the dataset epoch after epoch, each in the permutation drawn from
    ``seed`` and the epoch; iteration ``i`` takes stream positions ``i*B .. i*B + B - 1`` of which
    rank ``r`` gets the ``r``-th slice of ``B / world``. Each item carries its own augmentation
    seed, so restarting at any iteration reproduces the same batches.
    """

    def __init__(self, size: int, batch_size: int, rank: int, world: int, seed: int, start: int, stop: int) -> None:
        self.size, self.batch_size, self.rank, self.world = size, batch_size, rank, world
        self.seed, self.start, self.stop = seed, start, stop
        self.per_rank = batch_size // world

    def __len__(self) -> int:
        return max(0, self.stop - self.start)

    def _permutation(self, epoch: int) -> list[int]:
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
        return torch.randperm(self.size, generator=generator).tolist()

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        cached_epoch, perm = -1, []
        for iteration in range(self.start, self.stop):
            batch = []
            for slot in range(self.per_rank):
                position = iteration * self.batch_size + self.rank * self.per_rank + slot
                epoch = position // self.size
                if epoch != cached_epoch:
                    cached_epoch, perm = epoch, self._permutation(epoch)
                batch.append((perm[position % self.size], (self.seed * 1_000_003 + position) % (1 << 62)))
            yield batch


def lr_factor(solver, iteration: int) -> float:
    """Learning-rate multiplier at ``iteration``: linear warmup, then poly or multistep."""
    if solver.lr_schedule == "poly":
        factor = (1 - min(iteration, solver.max_iter) / solver.max_iter) ** solver.poly_power
    else:
        factor = solver.gamma ** sum(iteration >= s for s in solver.steps)
    if iteration < solver.warmup_iters:
        alpha = iteration / solver.warmup_iters
        factor *= solver.warmup_factor * (1 - alpha) + alpha
    return factor


def build_optimizer(model: torch.nn.Module, solver) -> torch.optim.Optimizer:
    params = [p for p in model.parameters() if p.requires_grad]
    if solver.optimizer == "sgd":
        return torch.optim.SGD(params, lr=solver.base_lr, momentum=solver.momentum, weight_decay=solver.weight_decay)
    cls = torch.optim.AdamW if solver.optimizer == "adamw" else torch.optim.Adam
    return cls(params, lr=solver.base_lr, weight_decay=solver.weight_decay)


class Preemption:
    """SIGTERM / SIGINT set a flag; the loop finishes its iteration, writes ``last.pt`` and exits."""

    def __init__(self) -> None:
        self.requested = False
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._handle)

    def _handle(self, signum, frame) -> None:
        self.requested = True


def setup_distributed(device_kind: str) -> tuple[int, int, torch.device]:
    """(rank, world size, device); initialises the process group under torchrun."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    use_cuda = device_kind == "cuda" or (device_kind == "auto" and torch.cuda.is_available())
    if device_kind == "cuda" and not torch.cuda.is_available():
        raise ConfigError("train.device: cuda requested but no CUDA device is available")
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = torch.device("cuda", local_rank) if use_cuda else torch.device("cpu")
    if use_cuda:
        torch.cuda.set_device(device)
    if world > 1:
        dist.init_process_group("nccl" if use_cuda else "gloo")
        return dist.get_rank(), world, device
    return 0, 1, device


def rng_state(device: torch.device) -> dict:
    state = {"torch": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def set_rng_state(state: dict, device: torch.device) -> None:
    torch.set_rng_state(state["torch"])
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)


class Run:
    """One training run: owns the model, optimiser, loaders and the output folder."""

    def __init__(self, config: ExperimentConfig, out: Path, resume: bool, rank: int, world: int, device) -> None:
        self.config, self.out, self.rank, self.world, self.device = config, out, rank, world, device
        self.is_main = rank == 0
        solver = config.solver
        if config.dataloader.batch_size % world:
            raise ConfigError(
                f"dataloader.batch_size: {config.dataloader.batch_size} is not divisible by the {world} processes"
            )
        prepare_dataset(config.data, is_main=self.is_main)
        self.train_set = open_dataset(config.data, config.data.train_split, train_transforms(config.data))
        self.val_set = open_dataset(config.data, config.data.val_split)
        self.categories = self.train_set.categories
        torch.manual_seed(config.train.seed)
        model = build(config, self.categories).to(device)
        if config.train.sync_bn and world > 1:
            if device.type != "cuda":
                raise ConfigError("train.sync_bn: SyncBatchNorm needs CUDA devices")
            model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
        self.model = model
        self.optimizer = build_optimizer(model, solver)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, lambda it: lr_factor(solver, it))
        self.start_iter, self.best_pq = 0, -1.0
        if resume:
            self._restore(out / "last.pt")
        self.ddp = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None) \
            if world > 1 else model  # fmt: skip
        sampler = IterationBatches(len(self.train_set), config.dataloader.batch_size, rank, world,
                                   config.train.seed, self.start_iter, solver.max_iter)  # fmt: skip
        collate = PanopticCollate(model.size_divisibility, target_generator=model.target_generator())
        self.loader = DataLoader(
            SeededSamples(self.train_set), batch_sampler=sampler, num_workers=config.dataloader.num_workers,
            collate_fn=collate, pin_memory=device.type == "cuda", generator=torch.Generator(),
        )  # fmt: skip
        self.val_loader = eval_loader(config, self.val_set, model.size_divisibility)
        self.metrics = (out / "metrics.jsonl").open("a", encoding="utf-8") if self.is_main else None
        self.tensorboard = _tensorboard(out) if self.is_main else None

    def _restore(self, path: Path) -> None:
        state = load_checkpoint(path, what="--resume checkpoint")
        if state.get("method") != self.config.method:
            raise ConfigError(f"--resume checkpoint {path}: saved by method {state.get('method')!r}, "
                              f"not {self.config.method!r}")  # fmt: skip
        for key in ("optimizer", "scheduler", "iteration", "rng"):
            if key not in state:
                raise ConfigError(f"--resume checkpoint {path}: no {key!r} (only last.pt can be resumed)")
        load_model_state(self.model, state["model"], path)
        try:
            self.optimizer.load_state_dict(state["optimizer"])
            self.scheduler.load_state_dict(state["scheduler"])
        except (ValueError, KeyError) as exc:
            raise ConfigError(f"--resume checkpoint {path}: optimizer state does not fit ({exc})") from None
        set_rng_state(state["rng"], self.device)
        self.start_iter = int(state["iteration"])
        self.best_pq = float(state.get("best_pq", -1.0))

    def save_last(self, iteration: int) -> None:
        if self.is_main:
            save_atomic(
                {
                    "model": self.model.state_dict(),
                    "optimizer": self.optimizer.state_dict(),
                    "scheduler": self.scheduler.state_dict(),
                    "iteration": iteration,
                    "method": self.config.method,
                    "config": self.config.to_dict(),
                    "rng": rng_state(self.device),
                    "best_pq": self.best_pq,
                },
                self.out / "last.pt",
            )

    def log(self, record: dict) -> None:
        if self.metrics is not None:
            self.metrics.write(json.dumps(record) + "\n")
            self.metrics.flush()

    def evaluate(self, iteration: int) -> dict:
        vis = self._visualizer()
        results = evaluate_model(self.model, self.val_loader, self.categories, self.device, on_result=vis)
        if self.is_main:
            write_json_atomic(self.out / "metrics.json", results)
            self.log({"type": "eval", "iteration": iteration, **{k: results[k] for k in ("All", "Things", "Stuff")},
                      "per_class": results["per_class"]})  # fmt: skip
            pq = results["All"]["pq"]
            if self.tensorboard is not None:
                for group in ("All", "Things", "Stuff"):
                    self.tensorboard.add_scalar(f"eval/PQ_{group}", 100 * results[group]["pq"], iteration)
            tqdm.write(
                f"evaluation at iteration {iteration} ({len(self.val_set)} val images):\n{format_table(results)}"
            )
            if pq > self.best_pq:
                self.best_pq = pq
                save_atomic({"model": self.model.state_dict(), "iteration": iteration, "pq": pq},
                            self.out / "model_best.pt")  # fmt: skip
        return results

    def _visualizer(self):
        count = self.config.test.vis_images if self.is_main else 0
        if count <= 0:
            return None
        (self.out / "vis").mkdir(exist_ok=True)
        index_of = {image_id: i for i, image_id in enumerate(self.val_set.image_ids)}
        done = []

        def draw(result, target) -> None:
            if len(done) < count:
                image, _ = self.val_set.load(index_of[target.image_id])
                write_overlay(self.out / "vis" / f"{target.image_id}.png", image, result, self.categories)
                done.append(target.image_id)

        return draw

    def train(self) -> int:
        config, solver = self.config, self.config.solver
        preemption = Preemption()
        iteration = self.start_iter
        bar = tqdm(total=solver.max_iter, initial=iteration, disable=not self.is_main, dynamic_ncols=True)
        autocast = solver.amp and self.device.type == "cuda"
        self.model.train()
        start = time.perf_counter()
        for batch in self.loader:
            batch = batch.to(self.device, non_blocking=True)
            with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=autocast):
                losses = self.ddp(batch)
            loss = sum(losses.values())
            # Every rank decides together: one rank raising alone would leave the others in backward's all-reduce.
            if _any_rank(not bool(torch.isfinite(loss)), self.world):
                where = "" if not torch.isfinite(loss) else " on another rank"
                raise FloatingPointError(f"loss is not finite{where} at iteration {iteration}: {_floats(losses)}")
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if solver.clip_grad_norm is not None:
                torch.nn.utils.clip_grad_norm_(self.model.parameters(), solver.clip_grad_norm)
            self.optimizer.step()
            self.scheduler.step()
            iteration += 1
            bar.update(1)
            if iteration % config.train.log_period == 0 or iteration == solver.max_iter:
                values = _reduce_mean(losses, self.world)
                record = {"type": "train", "iteration": iteration, "lr": self.scheduler.get_last_lr()[0],
                          "loss": sum(values.values()), **values,
                          "seconds_per_iter": (time.perf_counter() - start) / config.train.log_period}  # fmt: skip
                start = time.perf_counter()
                self.log(record)
                bar.set_postfix(loss=f"{record['loss']:.3f}")
                if self.tensorboard is not None:
                    for key, value in values.items():
                        self.tensorboard.add_scalar(f"train/{key}", value, iteration)
            stop = _any_rank(preemption.requested, self.world)
            if stop or iteration % solver.checkpoint_period == 0 or iteration == solver.max_iter:
                self.save_last(iteration)
            if stop:
                bar.close()
                if self.is_main:
                    print(f"stopped by a signal after iteration {iteration}; {self.out / 'last.pt'} written, "
                          f"continue with --resume")  # fmt: skip
                return iteration
            if config.test.eval_period and iteration % config.test.eval_period == 0 and iteration != solver.max_iter:
                self.evaluate(iteration)
        bar.close()
        if self.is_main:
            save_atomic({"model": self.model.state_dict()}, self.out / "model_final.pt")
        self.evaluate(iteration)
        return iteration


def _floats(losses: dict) -> dict:
    return {k: float(v) for k, v in losses.items()}


def _reduce_mean(losses: dict, world: int) -> dict:
    values = torch.stack([v.detach().float() for v in losses.values()])
    if world > 1:
        dist.all_reduce(values)
        values /= world
    return {k: float(v) for k, v in zip(losses, values.cpu(), strict=True)}


def _any_rank(flag: bool, world: int) -> bool:
    if world == 1:
        return flag
    value = torch.tensor([int(flag)], device="cuda" if dist.get_backend() == "nccl" else "cpu")
    dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return bool(value.item())


def _tensorboard(out: Path):
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:  # tensorboard is optional
        return None
    return SummaryWriter(str(out / "tensorboard"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True, type=Path, help="examples/configs/<method>_<dataset>.yaml")
    parser.add_argument("--output-dir", required=True, type=Path)
    parser.add_argument("--resume", action="store_true", help="continue from OUTPUT_DIR/last.pt")
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides, e.g. solver.max_iter=100")
    args = parser.parse_args(argv)
    # Subnormal floats make CPU kernels up to 10x slower late in training; flushing them to
    # zero changes no result that matters (values below 1e-38).
    torch.set_flush_denormal(True)
    rank = 0
    try:
        config = load_experiment(args.config, args.overrides)
        out = args.output_dir
        if args.resume and not (out / "last.pt").is_file():
            raise ConfigError(f"--resume: {out / 'last.pt'} does not exist")
        if not args.resume and (out / "last.pt").exists():
            raise ConfigError(
                f"--output-dir {out} already holds a run (last.pt); pass --resume or choose another folder"
            )
        rank, world, device = setup_distributed(config.train.device)
        if rank == 0:
            out.mkdir(parents=True, exist_ok=True)
            config_file = out / "config.yaml"
            config_file.write_text(yaml.safe_dump(config.to_dict(), sort_keys=False), encoding="utf-8")
        run = Run(config, out, args.resume, rank, world, device)
        run.train()
    except ConfigError as exc:
        if rank == 0:
            print(f"train.py: error: {exc}", file=sys.stderr)
        return 2
    finally:
        if dist.is_available() and dist.is_initialized():
            dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main())
