"""Video data: readers (`readers.py`: decord, PyAV, probing) apart from the clip dataset (`dataset.py`)."""
