"""grokjax: ensembles of small grokking models in JAX, trained and analysed in one compiled program."""

__version__ = "0.1.0"
