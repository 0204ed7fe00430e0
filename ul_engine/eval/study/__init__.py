"""`ul study`: the paper's tables at small scale. `plan` builds the grid and its budget (nothing runs),
`run` trains and evaluates it (evaluations cached in the store), `report` writes the Markdown, plots and JSON."""
