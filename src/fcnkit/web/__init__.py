"""See it in the browser: the convolution explorer (``fcnkit explore``) and run reports.

* :mod:`fcnkit.web.explore`: the explorer's JSON views over :mod:`fcnkit.arith`.
* :mod:`fcnkit.web.server`: a standard-library HTTP server for the page and those views.
* :mod:`fcnkit.web.report`: a run directory -> one self-contained ``report.html``.
"""
