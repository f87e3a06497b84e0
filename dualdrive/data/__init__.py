"""Demonstration data for System 1: collection (``collect.py``, one episode in ``episode.py``), the
on-disk format (``format.py``), the privileged labels (``bev.py``, ``labels.py``), DART noise
(``dart.py``), the dataset card (``card.py``) and the training reader (``dataset.py``)."""
