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


# ----------------------------------------------------------------------------------------------- held-out episodes
def test_held_out_episodes_are_the_last_ones_and_never_in_the_training_windows(tmp_path):
    from jepa_world.data.episodes import EpisodeDataset
    from jepa_world.data.windows import hold_out_episodes
    from jepa_world.envs.collect import collect_episodes

    root = collect_episodes(env_name="point_arena", num_episodes=5, steps=6, output_dir=tmp_path / "eps",
                            seed=0, image_size=16, progress=False)  # fmt: skip
    ds = EpisodeDataset(root=root, window=3)
    train, val = hold_out_episodes(ds, 2)
    episode_of = ds.window_episodes()
    assert len(train) + len(val) == len(ds) and len(val) == (episode_of >= 3).sum() > 0
    seen_train = {ds.window_rows(int(i))[0] for i in train.indices}
    seen_val = {ds.window_rows(int(i))[0] for i in val.indices}
    assert seen_train == {0, 1, 2} and seen_val == {3, 4}
    # keys are the dataset's: i and (i, aug_seed) give the item of the i-th window of the subset
    for subset in (train, val):
        for i in (0, len(subset) - 1):
            expected = ds[int(subset.indices[i])]
            for key in (i, (i, 7)):
                assert all(np.array_equal(subset[key][k], expected[k]) for k in expected)
    for bad in (0, 5, -1):
        with pytest.raises(ValueError, match=rf"wm.val_episodes={bad} must be between 1 and 4: the dataset has 5 ep"):
            hold_out_episodes(ds, bad, where="wm.val_episodes")
