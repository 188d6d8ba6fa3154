"""The shared window helpers (the datasets on top are tested in test_episodes.py and test_lerobot.py)."""

import numpy as np
import pytest

from jepa_world.data.windows import check_window_args, first_nonfinite, nonfinite_message


def test_first_nonfinite_names_kind_and_row():
    x = np.zeros((5, 2), np.float32)
    assert first_nonfinite(x) is None
    x[3, 1] = np.inf
    x[4, 0] = np.nan
    assert first_nonfinite(x) == ("inf", 3)
    x[1, 0] = np.nan
    assert first_nonfinite(x) == ("NaN", 1)


def test_nonfinite_message_maps_rows_to_episode_steps():
    x = np.zeros((3, 1), np.float32)
    x[2] = np.nan
    assert nonfinite_message(x, "actions") == "actions contain NaN at step 2"
    assert nonfinite_message(x, "states", np.array([10, 12, 14])) == "states contain NaN at step 14"
    assert nonfinite_message(np.zeros((0, 1)), "actions") is None


@pytest.mark.parametrize(
    ("kwargs", "named"),
    [
        (dict(window=0, frameskip=1, stride=1, image_size=None), "window"),
        (dict(window=2, frameskip=1.5, stride=1, image_size=None), "frameskip"),
        (dict(window=2, frameskip=1, stride=-1, image_size=None), "stride"),
        (dict(window=2, frameskip=1, stride=1, image_size=0), "image_size"),
    ],
)
def test_check_window_args_names_the_bad_value(kwargs, named):
    with pytest.raises(ValueError, match=named):
        check_window_args(**kwargs)
    check_window_args(window=2, frameskip=1, stride=1, image_size=None)
