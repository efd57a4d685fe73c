"""Hydra entry points, simulated worlds and dataset readers, sweeps and reports.

Importing the package registers tandem's generated Hydra schemas (``train/base``, ``fl/base``,
``fl/strategy/*``; see :mod:`simulations.config_schema`), so any compose of ``conf/`` works.
"""

from simulations.config_schema import register_configs

register_configs()
