"""The HTTP service: bundles, session state, the event log, A/B variants, blue-green swaps and
``/metrics``. It runs the one two-tier pipeline of :mod:`ranking.pipeline`; a retrained model reaches
it as a bundle (:mod:`serving.bundle`), never through :mod:`fl`."""
