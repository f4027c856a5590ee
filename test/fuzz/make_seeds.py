#!/usr/bin/env python3
"""make_seeds.py MODEL SAFETENSORS_DIR TSV_DIR — seed corpora for the fuzzers.

Generated at run time (nothing binary is committed): the bundled model, valid
variants of it (without item_ids or item_popularity, popularity as I64, other
metadata, tensors stored in another order), tiny valid models (small inputs
fuzz fastest), and a few files the reader must reject (truncation, NaN,
duplicate ids, overlap, hole, bad header length).  Plus small interaction TSV
files for the TSV reader.  Standard library only.
"""
import json
import os
import random
import struct
import sys

TENSORS = [  # name, shape as a function of (rows, d)
    ("item_embedding.weight", lambda n, d: [n, d]),
    ("dense1.weight", lambda n, d: [d, d]), ("dense1.bias", lambda n, d: [d]),
    ("dense2.weight", lambda n, d: [d, d]), ("dense2.bias", lambda n, d: [d]),
    ("conv1d.weight", lambda n, d: [d, d, 3]), ("conv1d.bias", lambda n, d: [d]),
    ("gru_layers.weight_ih_l0", lambda n, d: [3 * d, d]),
    ("gru_layers.weight_hh_l0", lambda n, d: [3 * d, d]),
    ("projection.weight", lambda n, d: [d, d]), ("projection.bias", lambda n, d: [d]),
    ("selective_gate.0.weight", lambda n, d: [d // 2, d]),
    ("selective_gate.0.bias", lambda n, d: [d // 2]),
    ("selective_gate.2.weight", lambda n, d: [d, d // 2]),
    ("selective_gate.2.bias", lambda n, d: [d]),
    ("conv1dforgru.weight", lambda n, d: [d, d, 3]), ("conv1dforgru.bias", lambda n, d: [d]),
    ("linearattention.query.weight", lambda n, d: [d, d]),
    ("linearattention.query.bias", lambda n, d: [d]),
    ("linearattention.key.weight", lambda n, d: [d, d]),
    ("linearattention.key.bias", lambda n, d: [d]),
    ("linearattention.value.weight", lambda n, d: [d, d]),
    ("linearattention.value.bias", lambda n, d: [d]),
    ("linearattention.dense.weight", lambda n, d: [d, d]),
    ("linearattention.dense.bias", lambda n, d: [d]),
    ("linearattention.LayerNorm.weight", lambda n, d: [d]),
    ("linearattention.LayerNorm.bias", lambda n, d: [d]),
    ("weights", lambda n, d: [2]),
    ("dense.weight", lambda n, d: [d, d]), ("dense.bias", lambda n, d: [d]),
    ("dense3.weight", lambda n, d: [d, d]), ("dense3.bias", lambda n, d: [d]),
    ("dense4.weight", lambda n, d: [d, d]), ("dense4.bias", lambda n, d: [d]),
    ("denseout.weight", lambda n, d: [d, d]), ("denseout.bias", lambda n, d: [d]),
    ("LayerNorm.weight", lambda n, d: [d]), ("LayerNorm.bias", lambda n, d: [d]),
]


def parse(buf):
    n = struct.unpack("<Q", buf[:8])[0]
    h = json.loads(buf[8:8 + n])
    meta = h.pop("__metadata__", {})
    data = buf[8 + n:]
    tensors = {k: (v["dtype"], v["shape"], data[v["data_offsets"][0]:v["data_offsets"][1]])
               for k, v in h.items()}
    return meta, tensors


def build(meta, tensors, order=None, pad=True):
    """tensors: name -> (dtype, shape, bytes); order: data order of names."""
    names = order or sorted(tensors)
    header, off, blob = {}, 0, b""
    if meta is not None:
        header["__metadata__"] = meta
    for k in names:
        dt, shape, b = tensors[k]
        header[k] = {"dtype": dt, "shape": shape, "data_offsets": [off, off + len(b)]}
        off += len(b)
        blob += b
    js = json.dumps(header, separators=(",", ":")).encode()
    if pad:
        js += b" " * (-len(js) % 8)
    return struct.pack("<Q", len(js)) + js + blob


def f32(vals):
    return struct.pack("<%df" % len(vals), *vals)


def i64(vals):
    return struct.pack("<%dq" % len(vals), *vals)


def tiny(rows, d, heads, L, rng, ids=True, pop=True):
    t = {}
    for name, shape in TENSORS:
        s = shape(rows, d)
        n = 1
        for x in s:
            n *= x
        t[name] = ("F32", s, f32([rng.uniform(-0.5, 0.5) for _ in range(n)]))
    if ids:
        t["item_ids"] = ("I64", [rows], i64([0] + [1000 + 3 * j for j in range(1, rows)]))
    if pop:
        t["item_popularity"] = ("F32", [rows], f32([0.0] + [float(rng.randint(0, 9)) for _ in range(1, rows)]))
    meta = {"format": "glintru", "max_seq_len": str(L), "n_heads": str(heads)}
    return meta, t


def main():
    model, sdir, tdir = sys.argv[1:4]
    os.makedirs(sdir, exist_ok=True)
    os.makedirs(tdir, exist_ok=True)
    rng = random.Random(20261127)
    orig = open(model, "rb").read()
    meta, t = parse(orig)
    seeds = {"model": orig}

    seeds["canonical"] = build(meta, t)
    seeds["no_popularity"] = build(meta, {k: v for k, v in t.items() if k != "item_popularity"})
    seeds["no_item_ids"] = build(meta, {k: v for k, v in t.items() if k != "item_ids"})
    pop = struct.unpack("<%df" % (len(t["item_popularity"][2]) // 4), t["item_popularity"][2])
    seeds["popularity_i64"] = build(meta, dict(t, item_popularity=("I64", t["item_popularity"][1],
                                                                   i64([int(x) for x in pop]))))
    seeds["meta_pt"] = build({"format": "pt", "max_seq_len": "3", "n_heads": "1",
                              "layer_norm_eps": "1e-5"}, t)
    seeds["reverse_order"] = build(meta, t, order=sorted(t, reverse=True), pad=False)
    flipped = struct.unpack("<2f", t["weights"][2])
    seeds["weights_flipped"] = build(meta, dict(t, weights=("F32", [2], f32([flipped[1], flipped[0]]))))

    for i, (rows, d, heads, L) in enumerate([(2, 2, 1, 1), (4, 4, 2, 3), (3, 2, 2, 7)]):
        m, tt = tiny(rows, d, heads, L, rng, ids=i != 1, pop=i != 2)
        seeds["tiny%d" % i] = build(m, tt)

    # edge cases of the metadata: long window, tiny eps, odd heads, non-ASCII names
    m, tt = tiny(3, 2, 1, 65536, rng)
    seeds["long_window"] = build(m, tt)
    seeds["eps_denormal"] = build(dict(m, layer_norm_eps="1e-40", max_seq_len="2"), tt)
    seeds["bad_eps_underflow"] = build(dict(m, layer_norm_eps="1e-50", max_seq_len="2"), tt)
    seeds["bad_heads_gt_d"] = build(dict(m, n_heads="3", max_seq_len="2"), tt)
    seeds["bad_heads_zero"] = build(dict(m, n_heads="0", max_seq_len="2"), tt)
    seeds["bad_window_too_large"] = build(dict(m, max_seq_len="65537"), tt)
    seeds["bad_non_ascii_name"] = build(m, dict(tt, **{"caf\u00e9": ("F32", [1], f32([1.0]))}))

    # rejected inputs: they cover the error paths
    seeds["bad_truncated"] = orig[: len(orig) // 2]
    seeds["bad_header_only"] = orig[: 8 + struct.unpack("<Q", orig[:8])[0]]
    seeds["bad_hlen"] = struct.pack("<Q", 1 << 40) + orig[8:]
    nan = bytearray(f32([float("nan")]))
    e = t["dense1.bias"]
    seeds["bad_nan"] = build(meta, dict(t, **{"dense1.bias": (e[0], e[1], bytes(nan) + e[2][4:])}))
    ids = t["item_ids"]
    seeds["bad_dup_ids"] = build(meta, dict(t, item_ids=(ids[0], ids[1], ids[2][:16] + ids[2][8:16] + ids[2][24:])))
    m0, t0 = tiny(2, 2, 1, 1, rng)
    good = build(m0, t0)
    hl = struct.unpack("<Q", good[:8])[0]
    h0 = json.loads(good[8:8 + hl])
    h0["dense1.bias"]["data_offsets"] = [h0["dense1.bias"]["data_offsets"][0] - 4,
                                         h0["dense1.bias"]["data_offsets"][1] - 4]
    js = json.dumps(h0, separators=(",", ":")).encode()
    seeds["bad_overlap"] = struct.pack("<Q", len(js)) + js + good[8 + hl:]
    seeds["bad_hole"] = build(m0, t0)[:] + b"\0\0\0\0"
    seeds["bad_json"] = struct.pack("<Q", 12) + b'{"a":[1,{}]}'
    for k, v in seeds.items():
        open(os.path.join(sdir, k + ".safetensors"), "wb").write(v)

    tsv = {
        "basic": "user_id\titem_id\tts\n1\t103\t1\n1\t106\t2\n1\t109\t3\n2\t190\t1\n2\t187\t2\n2\t184\t5\n2\t181\t4\n",
        "extra_cols": "rating\tuser_id\tseq\titem_id\tx\n5\t7\t3\t118\ta\n4\t7\t1\t121\tb\n3\t7\t2\t124\tc\n1\t9\t1\t127\td\n",
        "crlf_blank": "user_id\titem_id\ttimestamp\r\n\r\n3\t130\t1.5\r\n3\t133\t1.25\r\n3\t136\t-2e3\r\n\r\n",
        "negative_ties": "item_id\tuser_id\tts\n-5\t-1\t0\n-6\t-1\t0\n-7\t-1\t0\n103\t9223372036854775807\t1\n",
        "bad_int": "user_id\titem_id\tts\n1\tx\t1\n",
        "bad_header": "user\titem\tts\n1\t2\t3\n",
        "short_row": "user_id\titem_id\tts\n1\t2\n",
        "header_only": "user_id\titem_id\tts\n",
    }
    lines = ["user_id\titem_id\tseq"]
    for u in range(20):
        for s in range(rng.randint(1, 12)):
            lines.append("%d\t%d\t%d" % (u, 103 + 3 * rng.randint(0, 29), s))
    tsv["many_users"] = "\n".join(lines) + "\n"
    for k, v in tsv.items():
        open(os.path.join(tdir, k + ".tsv"), "w").write(v)
    print("%d safetensors seeds, %d tsv seeds" % (len(seeds), len(tsv)))


if __name__ == "__main__":
    main()
