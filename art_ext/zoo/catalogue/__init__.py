"""The zoo's catalogues, one module per family, as data: each defines ``ENTRIES`` (registered by ``art_ext.zoo``)."""
