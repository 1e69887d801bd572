import json, glob, statistics as st, collections
from scipy import stats as sps
v6 = "runs/real_compare6/runs"
agg = collections.defaultdict(list)
print("| variant | seed | XSTest safe over-refusal, keyword (n=250) | string-match judge | XSTest unsafe refusal, keyword (n=200) | incoherent (safe) | same seed, 40-prompt subset |")
print("|---|---|---|---|---|---|---|")
for f in ["base"] + [f"{m}@{s}" for m in ("sft", "dualselect", "dualselect_paper") for s in range(3)]:
    v = [json.loads(l) for l in open(f + ".verdicts.jsonl")]
    g = [json.loads(l) for l in open(f + ".jsonl")]
    def rate(bench, judge):
        xs = [r["refused"] for r in v if r["benchmark"] == bench and r["judge"] == judge]
        return 100 * sum(xs) / len(xs), len(xs)
    o, n = rate("xstest", "keyword"); os_, _ = rate("xstest", "xstest_strmatch"); u, nu = rate("xstest_unsafe", "keyword")
    inc = 100 * sum(not r["coherent"] for r in g if r["benchmark"] == "xstest") / n
    m, _, s = f.partition("@")
    sub = "-"
    if s:
        sub = f"{100 * json.load(open(f'{v6}/{m}/seed{s}/metrics.json'))['metrics']['over_refusal_rate']:.1f}"
        agg[m].append((o, u))
    print(f"| {m} | {s or '-'} | {o:.1f} | {os_:.1f} | {u:.1f} | {inc:.1f} | {sub} | (n={n}, {nu})")
for m, xs in agg.items():
    for i, lab in ((0, "over-refusal"), (1, "unsafe refusal")):
        ys = [x[i] for x in xs]; mu = st.mean(ys); h = sps.t.ppf(0.975, 2) * st.stdev(ys) / 3 ** 0.5
        print(f"{m} {lab}: {mu:.1f} [{mu - h:.1f}, {mu + h:.1f}]")
