"""Migration scripts, oldest first (a package so that wheels and frozen builds ship them)."""
