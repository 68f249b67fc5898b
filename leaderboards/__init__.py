"""The leaderboard: the results store turned into comparison tables and figures.

Layout (one job per module):
    reference.yaml / reference.py   the paper's numbers, as data with their source
    columns.py                      what a column is (task, metric, dataset, K) and its header
    families.py                     a backbone's pretraining family and size (from its rows)
    stats.py                        mean / sample std / n of one cell, and its text
    label_mark.py                   the † mark: a supervised backbone scored on its own pretraining dataset
    searched.py                     searched results (--search): their § mark and what their search chose
    table.py                        ResultsStore -> Leaderboard (rows, cells, deltas, paper rows, cost)
    views.py                        Leaderboard -> the tables people read: summary, one per
                                    task and dataset, cost (headers, cells, best marks, captions)
    markdown.py / terminal.py       github markdown; plain text fitted to the terminal's width
    latex.py                        one booktabs table per view
    html.py / html_assets.py        the one-page HTML (sticky, sortable, cells link to run configs)
    longform.py                     csv / json: one record per run and metric
    figures.py                      matplotlib PNGs (bars per task, partial curve, mask-ratio sweep)
    render.py                       format dispatch and write_board(): the CLI's and demo's entry
    stores.py                       which results store `maebench leaderboard` shows

Nothing here imports torch; matplotlib is imported only when figures are drawn.
"""
