"""PyTorch reference timing for bench/recommend_history.sh (run with /usr/bin/python3).

usage: torch_forward.py REFERENCE_DIR MODEL HISTFILE SECONDS THREADS[,THREADS...]

For every history line of HISTFILE (external item ids, oldest first) and every
thread count: mean ms per call of what glintru_recommend_history(model, h, 10)
does — user vector (eval mode, torch.no_grad, float32), scores over the whole
item table, seen items and row 0 masked, top-10.  Prints one line per case:

    RESULT threads=<t> n=<history length> ms=<ms per call> calls=<count>

ms per call is the median of 5 batch means over SECONDS in all.
    TOP n=<history length> <external ids of the top 10, best first>
"""
import os
import sys
import time

ref_dir, model_path, hist_path, seconds, threads = sys.argv[1:6]
sys.path.insert(0, ref_dir)

import torch  # noqa: E402
from glintru_ref import GLINTRU, load_safetensors  # noqa: E402

seconds = float(seconds)
BATCHES = 5  # ms/call = median of the batch means (a shared, noisy machine)
default_threads = torch.get_num_threads()
tensors, meta = load_safetensors(model_path)
ids = tensors.pop("item_ids", None)
tensors.pop("item_popularity", None)
n_rows, d = tensors["item_embedding.weight"].shape
model = GLINTRU(n_rows, d=d, n_heads=int(meta["n_heads"]), max_len=int(meta["max_seq_len"]),
                eps=float(meta.get("layer_norm_eps", 1e-12)))
model.load_state_dict(tensors)
model.eval()
row_of = {int(v): j for j, v in enumerate(ids.tolist())} if ids is not None else None

histories = []
with open(hist_path) as f:
    for line in f:
        ext = [int(x) for x in line.split()]
        rows = [row_of[x] if row_of is not None else x for x in ext]
        histories.append([r for r in rows if 0 < r < n_rows])


def recommend(rows, k=10):
    scores = model.scores([rows])[0]
    scores[0] = float("-inf")
    scores[torch.tensor(rows)] = float("-inf")  # exclude_seen, the SQL default
    return torch.topk(scores, k)


print(f"torch {torch.__version__}, default threads {default_threads}, "
      f"model {n_rows - 1} items d {d}", file=sys.stderr)
with torch.no_grad():
    for t in [int(x) for x in threads.split(",")]:
        torch.set_num_threads(t)
        for rows in histories:
            recommend(rows)  # warm-up
            means, calls = [], 0
            for _ in range(BATCHES):
                n, t0 = 0, time.perf_counter()
                while True:
                    recommend(rows)
                    n += 1
                    el = time.perf_counter() - t0
                    if el >= seconds / BATCHES:
                        break
                means.append(el * 1e3 / n)
                calls += n
            ms = sorted(means)[BATCHES // 2]
            print(f"RESULT threads={t} n={len(rows)} ms={ms:.4f} calls={calls}", flush=True)
    for rows in histories:
        top = recommend(rows).indices.tolist()
        print("TOP n=%d %s" % (len(rows), " ".join(
            str(int(ids[j]) if ids is not None else j) for j in top)), flush=True)
