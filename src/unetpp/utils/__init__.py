"""Plumbing every layer may use: atomic writes and the --overwrite rule (:mod:`.atomic`), precision names
(:mod:`.precision`), ``--part k/n`` (:mod:`.sharding`), padding to a multiple (:mod:`.padding`) and
Markdown tables (:mod:`.tables`). Nothing here imports another unetpp module but :mod:`unetpp.errors`."""
