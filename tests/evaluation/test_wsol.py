"""Each step of the standard WSOL protocol (Choe et al., CVPR 2020) with
answers derived on paper from its definition, and the published unit-test
cases of its reference implementation re-derived as our own."""
import numpy as np
import pytest
import torch

from mmsaol.evaluation import (
    best_box_ious,
    box_iou,
    boxes_at_thresholds,
    boxes_to_frame,
    frame_scoremap,
    mask_to_frame,
    max_box_acc,
    normalize_scoremap,
    peak_in_boxes,
    pxap,
    score_histograms,
    threshold_list,
)

STEP_02 = np.arange(0, 1, 0.2)


# ------------------------------------------------------------------ IoU
def test_iou_of_empty_boxes_is_one_pixel_each():
    # (0, 0, 0, 0) is the pixel at the origin: two of them coincide.
    ious = box_iou(np.zeros((3, 4), int), np.zeros((5, 4), int))
    assert ious.shape == (3, 5) and ious.dtype == np.float64
    assert (ious == 1.0).all()


def test_iou_rejects_reversed_corners():
    with pytest.raises(ValueError, match='x0 <= x1'):
        box_iou(np.array([[1, 1, 0, 0]]), np.array([[1, 1, 2, 2]]))


def test_iou_identity_and_inclusive_areas():
    boxes = np.array([[1, 1, 3, 3], [4, 4, 5, 5]])
    np.testing.assert_array_equal(box_iou(boxes, boxes), np.eye(2))
    # A covers x 1..5, y 2..6 (25 px); B x 3..4, y 1..5 (10 px); they share
    # x 3..4, y 2..5 (8 px): 8 / (25 + 10 - 8).
    assert box_iou([1, 2, 5, 6], [3, 1, 4, 5])[0, 0] == pytest.approx(8 / 27)


# ---------------------------------------------------------------- frame
def test_boxes_to_frame_truncates():
    # x scaled by 35 / 10, y by 10 / 20: (3.5, 1, 14, 1.5) -> (3, 1, 14, 1).
    np.testing.assert_array_equal(
        boxes_to_frame([1, 2, 4, 3], (10, 20), (35, 10)), [[3, 1, 14, 1]])
    np.testing.assert_array_equal(
        boxes_to_frame([1, 2, 1, 2], (3, 3), (3, 3)), [[1, 2, 1, 2]])
    # The default frame is 224 x 224: 448 -> 224 halves, 112 doubles.
    np.testing.assert_array_equal(
        boxes_to_frame([[101, 3, 447, 55]], (448, 112)), [[50, 6, 223, 110]])


def test_mask_to_frame_nearest():
    mask = np.zeros((2, 2), np.uint8)
    mask[0, 1] = 255
    expected = np.zeros((4, 4), bool)
    expected[:2, 2:] = True
    np.testing.assert_array_equal(mask_to_frame(mask, (4, 4)), expected)


def test_normalisation_and_constant_or_nan_maps():
    np.testing.assert_allclose(normalize_scoremap([[2.0, 4.0], [3.0, 6.0]]),
                               [[0.0, 0.5], [0.25, 1.0]])
    for constant in (np.full((3, 3), 7.0), np.array([[1.0, np.nan]])):
        assert not normalize_scoremap(constant).any()
    # A constant map at feature resolution has no box, not the whole image.
    scoremap = frame_scoremap(torch.ones(7, 7))
    assert scoremap.shape == (224, 224) and not scoremap.any()
    boxes = boxes_at_thresholds(scoremap, STEP_02)
    assert all((b == 0).all() and b.shape == (1, 4) for b in boxes)


def test_frame_resize_is_bicubic():
    # Bicubic interpolation overshoots next to a step; bilinear cannot.
    heatmap = np.zeros((4, 4))
    heatmap[:, 2:] = 1.0
    row = frame_scoremap(heatmap, (16, 16))[0]
    assert row.min() == 0.0 and row.max() == 1.0
    assert np.sum((row > 0) & (row < 1)) >= 4  # over/undershoot, rescaled
    assert row[0] > row[5]  # the undershoot before the step is the minimum


# ---------------------------------------------- boxes (reference cases)
def test_boxes_of_an_all_zero_map():
    boxes = boxes_at_thresholds(np.zeros((3, 3)), STEP_02)
    assert [b.tolist() for b in boxes] == [[[0, 0, 0, 0]]] * 5


def test_boxes_unimodal():
    scoremap = np.array([[0.0, 0.0, 0.0, 0.0, 0.0],
                         [0.0, 0.4, 0.4, 0.4, 0.6],
                         [0.0, 0.4, 1.0, 0.8, 0.6],
                         [0.0, 0.4, 0.4, 0.4, 0.6]])
    boxes = boxes_at_thresholds(scoremap, STEP_02)
    # 8-bit levels 0, 51, 102, 153, 204 (strictly above); the box of a
    # contour is x, y, x + w, y + h clipped to (4, 3).
    assert [b[0].tolist() for b in boxes] == [
        [1, 1, 4, 3], [1, 1, 4, 3], [2, 1, 4, 3], [2, 2, 4, 3],
        [2, 2, 3, 3]]


def test_boxes_multimodal_largest_contour():
    scoremap = np.array([[0.4, 0.0, 0.2, 0.2, 0.2],
                         [0.4, 0.4, 0.0, 0.4, 0.0],
                         [0.0, 0.0, 0.0, 0.4, 0.0],
                         [1.0, 0.6, 0.8, 0.2, 0.2]])
    boxes = boxes_at_thresholds(scoremap, STEP_02)
    assert [b[0].tolist() for b in boxes] == [
        [0, 0, 4, 3], [0, 0, 2, 2], [0, 3, 3, 3], [2, 3, 3, 3],
        [0, 3, 1, 3]]


def test_nan_map_is_refused_by_the_box_step():
    with pytest.raises(ValueError, match='NaN'):
        boxes_at_thresholds(np.full((3, 3), np.nan), STEP_02)


def test_thresholds_are_strictly_above_the_8_bit_level():
    # 0.5 -> uint8 127; tau = 0.5 gives level int(0.5 * 255) = 127, which
    # drops the 127 pixels; tau = 0.49 gives level 124 and keeps them.
    scoremap = np.zeros((20, 20))
    scoremap[2:18, 2:18] = 0.5
    scoremap[8:10, 8:10] = 1.0
    low, high = boxes_at_thresholds(scoremap, [0.49, 0.5])
    assert low[0].tolist() == [2, 2, 18, 18]
    assert high[0].tolist() == [8, 8, 10, 10]


# ------------------------------------------------------- MaxBoxAcc / V2
def blob_map(*blobs):
    """A 224 x 224 map (the frame: resizing is the identity) with value v
    in each inclusive (x0, y0, x1, y1) rectangle."""
    scoremap = np.zeros((224, 224))
    for (x0, y0, x1, y1), v in blobs:
        scoremap[y0:y1 + 1, x0:x1 + 1] = v
    return scoremap


def test_box_of_a_blob_and_its_iou():
    # A 70 x 50 blob at x 60..129, y 50..99: boundingRect gives x + w = 130,
    # y + h = 100, so the estimated box is one pixel wider and taller than
    # the blob under the inclusive IoU: 70 * 50 / (71 * 51).
    scoremap = frame_scoremap(blob_map(((60, 50, 129, 99), 1.0)))
    ious = best_box_ious(scoremap, [[60, 50, 129, 99]], [0.0, 0.5, 0.99])
    np.testing.assert_allclose(ious, 3500 / 3621)


def test_only_multi_contour_finds_the_second_object():
    # A large blob (60 x 60) and a small one (30 x 20); the ground truth is
    # the small one only. V1 keeps the largest contour (IoU 0); V2 keeps
    # both and matches the small one: 30 * 20 / (31 * 21) = 0.92.
    scoremap = blob_map(((10, 10, 69, 69), 1.0), ((150, 150, 179, 169), 1.0))
    gt = [[150, 150, 179, 169]]
    thresholds = threshold_list(0.01)
    v1 = best_box_ious(scoremap, gt, thresholds)
    v2 = best_box_ious(scoremap, gt, thresholds, multi_contour=True)
    assert (v1 == 0).all()
    np.testing.assert_allclose(v2, 600 / 651)
    assert max_box_acc(v1[None] >= 0.5)[0] == 0.0
    assert all(max_box_acc(v2[None] >= t)[0] == 100.0
               for t in (0.3, 0.5, 0.7))


def test_one_threshold_for_the_whole_split():
    # Image 1: ground truth = the core (value 1) inside a large 0.5 halo,
    # right only from tau = 0.5 on. Image 2: ground truth = the halo, right
    # only below 0.5. Each is right at its own best threshold, but no one
    # threshold serves both: MaxBoxAcc is 50, first reached at tau = 0.
    scoremap = blob_map(((20, 20, 199, 199), 0.5), ((100, 100, 119, 119),
                                                    1.0))
    thresholds = threshold_list(0.01)
    core = best_box_ious(scoremap, [[100, 100, 119, 119]], thresholds)
    halo = best_box_ious(scoremap, [[20, 20, 199, 199]], thresholds)
    correct = np.stack([core >= 0.5, halo >= 0.5])
    assert correct[0].tolist() == [t >= 0.495 for t in thresholds]
    assert correct[1].tolist() == [t < 0.495 for t in thresholds]
    assert max_box_acc(correct) == (50.0, 0)


# ------------------------------------------------------------------ PxAP
def test_pxap_with_an_ignored_pixel():
    # Foreground scores 0.95 and 0.65, background 0.75 and 0.15, and an
    # ignored background pixel at 0.99. Ranked: fg, bg, fg, bg: recall
    # reaches 1/2 at precision 1 and 1 at precision 2/3, so PxAP =
    # 1/2 * 1 + 1/2 * 2/3 = 5/6.
    scoremap = np.array([[0.95, 0.65, 0.75], [0.15, 0.99, 0.0]])
    foreground = np.array([[1, 1, 0], [0, 0, 0]], bool)
    ignore = np.array([[0, 0, 0], [0, 1, 1]], bool)
    thresholds = threshold_list(0.1)
    hist = score_histograms(scoremap, foreground, ignore, thresholds)
    assert hist[0].sum() == 2 and hist[1].sum() == 2
    assert pxap(*hist) == pytest.approx(100 * 5 / 6)
    # Counted as background, the 0.99 pixel ranks first: 1/2 * 1/2 +
    # 1/2 * 2/4 = 1/2 (the 0.0 pixel changes nothing: it ranks last).
    counted = score_histograms(scoremap, foreground, None, thresholds)
    assert pxap(*counted) == pytest.approx(50.0)


def test_pxap_of_perfect_and_constant_maps():
    rng = np.random.default_rng(0)
    foreground = rng.random((30, 30)) < 0.3
    ignore = (rng.random((30, 30)) < 0.2) & ~foreground
    thresholds = threshold_list(0.01)
    for ignore_score in (0.0, 1.0):  # a perfect map, whatever it says
        scoremap = foreground.astype(float)  # at the ignored pixels
        scoremap[ignore] = ignore_score
        assert pxap(*score_histograms(scoremap, foreground, ignore,
                                      thresholds)) == pytest.approx(100.0)
    share = foreground.sum() / (~ignore).sum()
    for value in (0.0, 0.5, 1.0):  # a constant map: precision = fg share
        hist = score_histograms(np.full((30, 30), value), foreground, ignore,
                                thresholds)
        assert pxap(*hist) == pytest.approx(100 * share)
    with pytest.raises(ValueError, match='foreground'):
        pxap(*score_histograms(np.zeros((3, 3)), np.zeros((3, 3), bool),
                               None, thresholds))
    # All foreground: precision 1 everywhere.
    assert pxap(*score_histograms(np.ones((3, 3)), np.ones((3, 3), bool),
                                  None, thresholds)) == pytest.approx(100.0)


# ------------------------------------------------------------ pointing
def test_peak_in_boxes_pointing_game():
    scoremap = blob_map(((30, 40, 31, 41), 1.0))
    assert peak_in_boxes(scoremap, [[30, 40, 30, 40]])  # inclusive corner
    assert not peak_in_boxes(scoremap, [[0, 0, 29, 39]])
    assert peak_in_boxes(scoremap, [[0, 0, 5, 5], [25, 35, 35, 45]])


def test_threshold_list_is_the_protocols():
    np.testing.assert_array_equal(threshold_list(0.01), np.arange(0, 1, 0.01))
    assert len(threshold_list(0.001)) == 1000
    with pytest.raises(ValueError, match='interval'):
        threshold_list(0.0)
