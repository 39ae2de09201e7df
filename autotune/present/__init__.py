"""How a study is shown: progress lines while it runs, the trial table, the HTML report with its plots, and
optuna-dashboard on its storage. Nothing here imports torch."""
