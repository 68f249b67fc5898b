"""The leaderboard: the results store turned into comparison tables and figures.

Layout (one job per module):
    reference.yaml / reference.py   the paper's numbers, as data with their source
    columns.py                      what a column is (task, metric, dataset, K) and its header
    families.py                     a backbone's pretraining family and size (registry, lazily)
    stats.py                        mean / sample std / n of one cell, and its text
    table.py                        ResultsStore -> Leaderboard (rows, columns, cells, deltas, cost)
    text.py                         github / latex / csv / json renderings
    html.py                         the self-contained HTML page
    figures.py                      matplotlib PNGs (partial curve, mask-ratio sweep, bars)
    render.py                       write_leaderboard(): the entry point for the CLI and the demo

Nothing here imports torch; matplotlib is imported only when figures are drawn.
"""
