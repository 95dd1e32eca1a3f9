"""Runnable walkthroughs (not installed with the package; run them from the repository root).

``own_model/``: the toolkit on a network and a data set of your own, through the CLIs and the API.
"""
