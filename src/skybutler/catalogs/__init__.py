"""Catalog products: declared schemas, HATS publication, sky searches and SQL loading.

Each module needs the ``catalogs`` extra (hats, lsdb, lsst-felis, ...) only when used,
so importing this package costs nothing.
"""
