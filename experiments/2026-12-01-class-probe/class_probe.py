"""What a pretrained sound-effect embedding knows about our classes: a probe on clean sound-bank crops.

    pip install --no-deps aisfx==0.1.2        # the wheel holds its weights (24.9 MB, CC-BY-4.0); no run-time fetch
    python experiments/2026-12-01-class-probe/class_probe.py --threads 1

The question (issue 14, class accuracy of the shipped model; issue 12 item 4): is the 10-class accuracy of the
network (0.31 of the detected on unseen 1-source scenes after 2,220 scene passes) limited by what a network
trained from scratch on ~1,300 training clips can learn, and would a pretrained embedding lift it? The probe
takes random 2-s crops of the 16-kHz sound-bank clips (``--train-crops`` per training clip, ``--test-crops``
per held-out clip, crops below 1e-4 peak dropped), and for each crop:

* the ``aisfx`` embedding (``EmbeddingNet``, the CNN of its cross-dataset sound-effect model, 512-d): the crop
  resampled to 44.1 kHz (``scipy.signal.resample_poly``), peak-normalised, a 2048-point Hann STFT with hop 1024,
  96 HTK mel bands over 0–22.05 kHz (each band of unit L1 norm), ``log10(1 + 10⁴·power)`` scaled by the package's
  range 9.4578, 87 frames (2 s); the bands above 8 kHz are empty for our 16-kHz audio, a domain shift the
  probe keeps;
* a baseline without pretraining: the mean and standard deviation over time of the same log-mel bands (192-d).

On each, a linear classifier and a one-hidden-layer MLP (256, ReLU, dropout 0.3) are fitted on the training
crops (features standardised, class-balanced cross-entropy since scenes draw classes uniformly, Adam 1e-3,
weight decay 1e-3, 1,500 full-batch steps) and scored on the held-out crops: accuracy and balanced accuracy
(the mean of the per-class recalls). The sound bank must be fetched (``deepasa sounds fetch``, train and test
splits). Results: ``experiments/2026-12-01-class-probe/results/class_probe.json``.

This measures clean single-source crops, an upper bound for what the embedding would give on a separated
object (reverberation, noise and leakage from other objects come on top).

``--scenes DIR --model MODEL.pt`` measures that instead, on 1-source scenes (``deepasa simulate`` output with
``train`` and ``val`` splits, e.g. the direction benchmark's ``/work/data/doa/1-static``): the model separates
each scene, the slot whose reference-channel image is closest (SI-SDR) to the source's is the object, and the
probes are fitted on the embeddings of that slot's estimated image of the first ``--train-scenes`` training
scenes and scored on the ``val`` scenes; beside them the same probes on the mixture's reference channel, and
the model's own class output on that slot (what ``cls_embedding: aisfx`` would add to). Results:
``experiments/2026-12-01-class-probe/results/class_probe_scenes.json``.

    python experiments/2026-12-01-class-probe/class_probe.py --scenes /work/data/doa/1-static \\
        --model checkpoints/shipped_latest.pt
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

from deepasa.errors import DeepASAError, run_script
from deepasa.staging import write_json

HERE = Path(__file__).resolve().parent                    # experiments/2026-12-01-class-probe
REPO = HERE.parents[1]
SCRIPT = (HERE / "class_probe.py").relative_to(REPO).as_posix()   # as the results' ``command`` names it
RESULTS = HERE / "results" / "class_probe.json"
RESULTS_SCENES = HERE / "results" / "class_probe_scenes.json"
SR_IN, SR_EMB = 16000, 44100
N_FFT, HOP, N_MELS, FRAMES = 2048, 1024, 96, 87          # 87 hops of 1024 samples at 44.1 kHz: 2.0 s
SPEC_MAX = 9.457798957824707                              # aisfx's "original" min-max range of the log-mel


def mel_filterbank(sr: int = SR_EMB, n_fft: int = N_FFT, n_mels: int = N_MELS, fmin: float = 0.0,
                   fmax: float | None = None) -> np.ndarray:
    """HTK-scale triangular mel filters, each of unit L1 norm: (n_mels, n_fft // 2 + 1)."""
    fmax = sr / 2 if fmax is None else fmax
    freqs = np.linspace(0, sr / 2, n_fft // 2 + 1)                             # (n_fft // 2 + 1,)
    mel = np.linspace(2595 * np.log10(1 + fmin / 700), 2595 * np.log10(1 + fmax / 700), n_mels + 2)
    edges = 700 * (10 ** (mel / 2595) - 1)                                      # (n_mels + 2,) Hz
    lo, mid, hi = edges[:-2, None], edges[1:-1, None], edges[2:, None]          # (n_mels, 1) each
    fb = np.maximum(0, np.minimum((freqs - lo) / (mid - lo), (hi - freqs) / (hi - mid)))  # (n_mels, n_freq)
    return fb / np.maximum(fb.sum(1, keepdims=True), 1e-12)


def log_mel(y: np.ndarray, fb: np.ndarray) -> np.ndarray:
    """aisfx's input features of a 44.1-kHz signal y (L,): (frames, n_mels), values in about [0, 1]."""
    y = y / max(float(np.abs(y).max()), 1e-9)                                   # peak-normalised
    y = np.pad(y, N_FFT // 2, mode="reflect")                                   # (L + N_FFT,) centred frames
    n = 1 + (len(y) - N_FFT) // HOP
    idx = np.arange(N_FFT)[None, :] + HOP * np.arange(n)[:, None]               # (n, N_FFT)
    frames = y[idx] * np.hanning(N_FFT + 1)[:-1]                                # (n, N_FFT) periodic Hann
    power = np.abs(np.fft.rfft(frames, axis=1)) ** 2                            # (n, N_FFT // 2 + 1)
    return np.log10(power @ fb.T * 1e4 + 1) / SPEC_MAX                          # (n, n_mels)


def crops(bank, split: str, per_clip: int, rng: np.random.Generator) -> tuple[list[np.ndarray], np.ndarray]:
    """Random 2-s crops of every clip of ``split``, at 44.1 kHz: ([(88200,)] * n, labels (n,))."""
    from scipy.signal import resample_poly

    xs, ys = [], []
    length = 2 * SR_IN
    for clip in bank.clips(split):
        a = bank.load(clip)                                                     # (L,) 16 kHz
        for _ in range(per_clip):
            if len(a) > length:
                start = int(rng.integers(0, len(a) - length))
                seg = a[start:start + length]                                   # (32000,)
            else:
                seg = np.pad(a, (0, length - len(a)))                           # (32000,)
            if np.abs(seg).max() < 1e-4:
                continue
            xs.append(resample_poly(seg, 441, 160).astype(np.float32))          # (88200,) 44.1 kHz
            ys.append(bank.classes.index(clip.label))
    return xs, np.array(ys)


def features(net, xs: list[np.ndarray], batch: int = 32) -> tuple[np.ndarray, np.ndarray]:
    """(aisfx embeddings (n, 512), log-mel mean+std (n, 192)) of the crops."""
    fb = mel_filterbank()
    emb, stats = [], []
    with torch.no_grad():
        for i in range(0, len(xs), batch):
            spec = np.stack([log_mel(x, fb)[:FRAMES] for x in xs[i:i + batch]])  # (B, 87, 96)
            emb.append(net(torch.from_numpy(spec).float()).numpy())              # (B, 512)
            stats.append(np.concatenate([spec.mean(1), spec.std(1)], 1))         # (B, 192)
    return np.concatenate(emb), np.concatenate(stats)


def probe(train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray, test_y: np.ndarray, n_classes: int,
          hidden: int = 0, steps: int = 1500, seed: int = 0) -> dict:
    """Fit a linear (hidden 0) or one-hidden-layer classifier on (n, D) features; accuracy on the test crops."""
    torch.manual_seed(seed)
    mu, sd = train_x.mean(0), train_x.std(0) + 1e-6
    a = torch.tensor((train_x - mu) / sd).float()                               # (n_train, D)
    b = torch.tensor((test_x - mu) / sd).float()                                # (n_test, D)
    d = a.shape[1]
    model = (torch.nn.Linear(d, n_classes) if not hidden else
             torch.nn.Sequential(torch.nn.Linear(d, hidden), torch.nn.ReLU(), torch.nn.Dropout(0.3),
                                 torch.nn.Linear(hidden, n_classes)))
    opt = torch.optim.Adam(model.parameters(), 1e-3, weight_decay=1e-3)
    counts = np.bincount(train_y, minlength=n_classes).clip(min=1)
    weight = torch.tensor(1.0 / counts).float()
    weight = weight / weight.mean()                                             # (C,) class-balanced
    target = torch.tensor(train_y)
    for _ in range(steps):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(a), target, weight=weight).backward()
        opt.step()
    model.eval()
    with torch.no_grad():
        pred = model(b).argmax(1).numpy()                                       # (n_test,)
    recalls = [float((pred[test_y == c] == c).mean()) for c in range(n_classes) if (test_y == c).any()]
    return {"accuracy": round(float((pred == test_y).mean()), 4),
            "balanced_accuracy": round(float(np.mean(recalls)), 4)}


def scene_embeddings(model, ds, n: int, sfx) -> dict[str, np.ndarray]:
    """Embeddings of the estimated object and of the mixture, and the model's class output, for the first n
    1-source scenes of ``ds``: {"object": (n, 512), "mixture": (n, 512), "model_pred": (n,), "label": (n,)}."""
    from deepasa.metrics.separation import si_sdr

    ref = model.config.ref_mic
    out: dict[str, list] = {"object": [], "mixture": [], "model_pred": [], "label": []}
    with torch.no_grad():
        for i in range(min(n, len(ds))):
            item = ds[i]
            x = item["mixture"][None]                                           # (1, M, N)
            est = model(x)
            target = (item["direct"][0, ref] + item["reverb"][0, ref]).numpy()  # (N,) the source's image
            images = est.image[0, :, ref]                                       # (J, N)
            j = int(np.argmax(si_sdr(images.numpy(), np.broadcast_to(target, images.shape))))  # the object's slot
            emb = sfx(torch.stack([images[j].float(), x[0, ref].float()]))       # (2, 512)
            out["object"].append(emb[0].numpy())
            out["mixture"].append(emb[1].numpy())
            out["model_pred"].append(int(est.cls_logits[0, j].argmax()))
            out["label"].append(int(item["cls"][0]))
    return {k: np.array(v) for k, v in out.items()}


def scenes_probe(args) -> dict:
    """The ``--scenes`` mode (module docstring): rows for the object's and the mixture's embeddings."""
    from deepasa.data.scenes import SceneDataset
    from deepasa.model.loading import load_model
    from deepasa.model.sfx_embedding import SFXEmbedding

    model = load_model(args.model).eval()
    sfx = SFXEmbedding(model.config.sample_rate)
    n_classes = model.config.n_classes
    t0 = time.time()
    train = scene_embeddings(model, SceneDataset(args.scenes, "train", n_slots=model.config.n_slots),
                             args.train_scenes, sfx)
    val = scene_embeddings(model, SceneDataset(args.scenes, "val", n_slots=model.config.n_slots), 10 ** 9, sfx)
    print(f"{len(train['label'])} training and {len(val['label'])} unseen scenes in {time.time() - t0:.0f} s",
          file=sys.stderr, flush=True)
    rows = []
    for name in ("object", "mixture"):
        for hidden in (0, 256):
            row = {"features": f"aisfx embedding of the {'estimated object image' if name == 'object' else 'mixture'}",
                   "classifier": "linear" if not hidden else "MLP-256",
                   **probe(train[name], train["label"], val[name], val["label"], n_classes, hidden, seed=args.seed)}
            print(json.dumps(row), flush=True)
            rows.append(row)
    pred, label = val["model_pred"], val["label"]
    recalls = [float((pred[label == c] == c).mean()) for c in range(n_classes) if (label == c).any()]
    own = {"features": "the model's own class output on the object's slot", "classifier": "-",
           "accuracy": round(float((pred == label).mean()), 4), "balanced_accuracy": round(float(np.mean(recalls)), 4)}
    print(json.dumps(own), flush=True)
    rows.append(own)
    return {"benchmark": "class probe on separated objects: aisfx embedding of the model's estimated image of the "
                         "one source vs of the mixture, and the model's own class output",
            "model": str(args.model), "scenes": str(args.scenes), "train_scenes": len(train["label"]),
            "val_scenes": len(val["label"]), "rows": rows}


def load_embedding_net():
    """aisfx's EmbeddingNet with the weights of its wheel (``pip install --no-deps aisfx==0.1.2``)."""
    try:
        import aisfx
        from aisfx.models.cnn2d import EmbeddingNet
    except ImportError as exc:
        raise DeepASAError(f"aisfx is not installed ({exc}): pip install --no-deps aisfx==0.1.2 tqdm") from exc
    path = Path(aisfx.__file__).parent / "models" / "checkpoint.pth"
    weights, _ = torch.load(path, map_location="cpu", weights_only=False)        # (state_dict, dataset heads)
    net = EmbeddingNet("max", 3, 1, 64)
    net.load_state_dict({k[len("embedding_net."):]: v for k, v in weights.items() if k.startswith("embedding_net.")})
    return net.eval()


def main() -> int:
    """Run the probe and write the results JSON."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--train-crops", type=int, default=3, help="random 2-s crops per training clip")
    p.add_argument("--test-crops", type=int, default=2, help="random 2-s crops per held-out clip")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--results", type=Path, default=None,
                   help=f"default {RESULTS.relative_to(REPO)} ({RESULTS_SCENES.name} with --scenes)")
    p.add_argument("--scenes", type=Path, default=None, help="1-source scenes (train, val): probe separated objects")
    p.add_argument("--model", type=Path, default=None, help="with --scenes: the model that separates them")
    p.add_argument("--train-scenes", type=int, default=400, help="with --scenes: training scenes for the probes")
    args = p.parse_args()
    from deepasa.scenes.soundbank import SoundBank

    torch.set_num_threads(args.threads)
    if args.scenes is not None:
        if args.model is None:
            raise DeepASAError("--scenes needs --model (the model that separates the scenes)")
        out = scenes_probe(args)
        out.update(command=" ".join(["python", SCRIPT, *sys.argv[1:]]),
                   time_utc=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
        write_json(args.results or RESULTS_SCENES, out)
        return 0
    net = load_embedding_net()
    bank = SoundBank.open()
    rng = np.random.default_rng(args.seed)
    t0 = time.time()
    train_xs, train_y = crops(bank, "train", args.train_crops, rng)
    test_xs, test_y = crops(bank, "test", args.test_crops, rng)
    if not train_xs or not test_xs:
        raise DeepASAError("the sound bank has no train or test clips: run `deepasa sounds fetch`")
    train_e, train_m = features(net, train_xs)
    test_e, test_m = features(net, test_xs)
    print(f"{len(train_y)} training crops, {len(test_y)} held-out crops, features in {time.time() - t0:.0f} s",
          file=sys.stderr, flush=True)
    rows = []
    for name, a, b in (("aisfx embedding", train_e, test_e), ("log-mel mean+std", train_m, test_m)):
        for hidden in (0, 256):
            row = {"features": name, "classifier": "linear" if not hidden else "MLP-256",
                   **probe(a, train_y, b, test_y, len(bank.classes), hidden, seed=args.seed)}
            print(json.dumps(row), flush=True)
            rows.append(row)
    out = {"benchmark": "class probe: pretrained aisfx embedding vs log-mel statistics on clean 2-s crops of the "
                        "sound bank (10 classes)",
           "command": " ".join(["python", SCRIPT, *sys.argv[1:]]),
           "train_crops": len(train_y), "test_crops": len(test_y),
           "test_class_counts": np.bincount(test_y, minlength=len(bank.classes)).tolist(),
           "classes": bank.classes, "rows": rows,
           "machine": {"cpus": __import__("os").cpu_count(), "python": platform.python_version()},
           "time_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    write_json(args.results or RESULTS, out)
    return 0


if __name__ == "__main__":
    run_script(main)
