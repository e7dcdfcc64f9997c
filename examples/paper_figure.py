"""The paper's co-evolution figure from Python: text diversity (Gini-Simpson) of
scenarios/coevolve.ron over 20 replicates, the mean and the 5-95% band per round, as
`coevo plot` draws it (docs/figures/coevolve_diversity.png). Writes paper_figure.png when
matplotlib is installed, else prints the curve every 250 rounds.
Run from the repository's root after `pip install ./python`: python examples/paper_figure.py"""
import coevo
import polars as pl

metrics = coevo.run("scenarios/coevolve.ron", replicates=20).metrics
curve = (metrics.filter(model="captioner", metric="gini_simpson").group_by("round").agg(
    mean=pl.col("value").mean(), q05=pl.col("value").quantile(0.05), q95=pl.col("value").quantile(0.95)).sort("round"))
try:
    import matplotlib.pyplot as plt
except ImportError:
    print(curve.filter(pl.col("round") % 250 == 0))
else:
    plt.fill_between(curve["round"], curve["q05"], curve["q95"], alpha=0.3)
    plt.plot(curve["round"], curve["mean"]), plt.xlabel("round"), plt.ylabel("Gini-Simpson diversity")
    plt.savefig("paper_figure.png", dpi=150)
