"""Does the finder learn with plain BCE? pos_weight sweep on bank-free white-noise scenes (docs/finder.md, "Why the weight").

    python experiments/2026-12-07-finder-posweight/noise_check.py 1 5 10 20
"""
import sys, time
import numpy as np, torch
torch.set_num_threads(1)
from deepasa.scenes.simulator import simulate_scene
from deepasa.train.finder import FinderTrainer, TrainConfig, Scene, SyncSource, evaluate

def make(seed, i):
    rng = np.random.default_rng([seed, i])
    n = int(rng.integers(1, 4))
    s = simulate_scene(seed=seed, index=i, sources=[("noise", rng.standard_normal(int(rng.integers(16000, 64000)))) for _ in range(n)])
    return Scene(i, s.mixture.astype(np.float32), s.activity, s.doa.astype(np.float32))

t = time.time()
train = [make(1, i) for i in range(60)]
val = {"noise": [make(2, i) for i in range(10)]}
print("sim", time.time() - t, flush=True)
for pw in [float(x) for x in sys.argv[1:]]:
    torch.manual_seed(0)
    tr = FinderTrainer(TrainConfig(pos_weight=pw, min_fill=1))
    tr.pull(SyncSource(lambda i: train[i], range(60)), block=False)
    t = time.time()
    losses = [tr.step() for _ in range(400)]
    dt = time.time() - t
    res = evaluate(tr.model.eval(), val, thresholds=(0.2, 0.3, 0.5))
    print(f"pos_weight {pw}: {dt/400:.3f} s/step loss {np.mean(losses[:20]):.4f} -> {np.mean(losses[-20:]):.4f}", flush=True)
    for k, r in res.items():
        print("  ", k, {a: round(b, 3) for a, b in r.items()}, flush=True)
