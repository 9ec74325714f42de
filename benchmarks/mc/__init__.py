"""Monte Carlo referee for the electron pencil beam (benchmark only: ``ompmc`` is GPL-3.0 and never a runtime
dependency of rtexport).

``cases`` describes the phantoms and fields (pure numpy), ``montecarlo`` runs and caches ``ompmc``,
``commission`` turns Monte Carlo water data into an rtexport beam model.
"""
