"""Video data: the readers (`readers.py`: decord, PyAV), opening and probing files through the fallback between
them (`files.py`), the clip dataset (`dataset.py`)."""
