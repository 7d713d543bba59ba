"""Tracks of a label stack (tracks.py): centroids per object and frame, CSV round trip."""

from __future__ import annotations

import numpy as np
import pytest

from napari_sam2_webgpu import tracks as tr
from napari_sam2_webgpu.cli import main


def stack():
    labels = np.zeros((4, 30, 40), np.uint16)
    labels[0, 2:6, 10:20] = 5  # centroid (3.5, 14.5), area 40
    labels[1, 4:8, 12:22] = 5
    labels[3, 20:30, 0:2] = 5  # absent on frame 2
    labels[1:4, 10:13, 30:33] = 2  # (11, 31), area 9
    return labels


def test_centroids_per_object_and_frame():
    tracks = tr.label_tracks(stack())
    assert tracks.shape == (6, 5)  # sorted by id, then frame
    np.testing.assert_array_equal(tracks[:, :2], [[2, 1], [2, 2], [2, 3], [5, 0], [5, 1], [5, 3]])
    by_key = {(int(i), int(t)): (y, x, a) for i, t, y, x, a in tracks}
    assert set(by_key) == {(2, 1), (2, 2), (2, 3), (5, 0), (5, 1), (5, 3)}
    assert by_key[(5, 0)] == pytest.approx((3.5, 14.5, 40))
    assert by_key[(5, 3)] == pytest.approx((24.5, 0.5, 20))
    assert by_key[(2, 2)] == pytest.approx((11, 31, 9))
    only = tr.label_tracks(stack(), ids=[2])
    assert set(only[:, 0]) == {2} and len(only) == 3


def test_bands_give_the_same_centroids(monkeypatch):
    """Frames are read in bands of rows (bounded memory): any band size, the same result."""
    whole = tr.label_tracks(stack())
    monkeypatch.setattr(tr, "_BAND_PIXELS", 7)  # less than a row: one row at a time
    np.testing.assert_allclose(tr.label_tracks(stack()), whole)


def test_bad_input():
    with pytest.raises(ValueError, match="stack"):
        tr.label_tracks(np.zeros((5, 5), np.uint8))
    with pytest.raises(ValueError, match="integer"):
        tr.label_tracks(np.zeros((2, 5, 5), np.float32))
    assert tr.label_tracks(np.zeros((2, 5, 5), np.uint8)).shape == (0, 5)


def test_csv_round_trip_and_no_clobber(tmp_path):
    tracks = tr.label_tracks(stack())
    path = tr.write_tracks_csv(tmp_path / "t.csv", tracks)
    assert path.read_text().splitlines()[0] == "track_id,frame,y,x,area"
    np.testing.assert_allclose(tr.read_tracks_csv(path), tracks, atol=1e-3)
    with pytest.raises(FileExistsError):
        tr.write_tracks_csv(path, tracks[:1])
    assert len(tr.read_tracks_csv(path)) == len(tracks)  # untouched
    bad = tmp_path / "bad.csv"
    bad.write_text("a,b\n1,2\n")
    with pytest.raises(ValueError, match="not a tracks CSV"):
        tr.read_tracks_csv(bad)


def test_cli_tracks(tmp_path, capsys):
    src = tmp_path / "labels.npy"
    np.save(src, stack())
    out = tmp_path / "tracks.csv"
    assert main(["tracks", str(src), "--out", str(out)]) == 0
    assert "2 objects, 6 rows over 4 frames" in capsys.readouterr().out
    np.testing.assert_allclose(tr.read_tracks_csv(out), tr.label_tracks(stack()), atol=1e-3)
    assert main(["tracks", str(src), "--out", str(out)]) == 1  # exists: an error, untouched
    assert "--overwrite" in capsys.readouterr().err
    assert main(["tracks", str(src), "--out", str(tmp_path / "t.txt")]) == 1
    assert main(["tracks", str(src), "--out", str(out), "--ids", "5", "--overwrite"]) == 0
    assert set(tr.read_tracks_csv(out)[:, 0]) == {5}
