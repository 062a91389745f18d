"""Reproductions of the papers' claims: ``python -m pathattr.experiments ig|neurons|idg``."""
