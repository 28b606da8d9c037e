"""The limbs task: labels and parts against brute-force geometry, border, gaps, widths,
the body's orientation cue, colour statistics, determinism, layout and the CLI."""

import json
import math

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage

from fcnkit.cli import main
from fcnkit.data import open_dataset
from fcnkit.data.limbs import LIMBS_CLASSES, PART_NAMES, render_limbs
from fcnkit.data.synthetic import (
    generate_synthetic_dataset,
    read_geometry,
    read_part_mask,
    render_synthetic_sample,
)
from fcnkit.errors import InputError

SIZE = (64, 80)
TRAIN, VAL = 4, 2


def _tree(root):
    return {p.relative_to(root).as_posix(): p.read_bytes()
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def limbs(tmp_path_factory):
    out = tmp_path_factory.mktemp("limbs")
    generate_synthetic_dataset(out, train=TRAIN, val=VAL, seed=5, size=SIZE, workers=1,
                               task="limbs")
    return out


def _ids(root):
    return [f"train_{i:05d}" for i in range(TRAIN)] + [f"val_{i:05d}" for i in range(VAL)]


def _png(path):
    with Image.open(path) as image:
        return np.asarray(image).copy()


# ------------------------------------------------------------------ brute-force geometry
# Scalar, per-pixel re-statements of the recorded shapes (no numpy, no vectorisation).
# Each returns (inside, margin): margin = distance of the pixel's value from the
# threshold, so pixels on the edge to rounding (margin < 1e-6) are not compared.


def _in_body(body, py, px):
    dy, dx = py - body["cy"], px - body["cx"]
    c, s = math.cos(body["angle"]), math.sin(body["angle"])
    u = (dx * c + dy * s) / body["a"]
    v = (-dx * s + dy * c) / body["b"]
    t = math.atan2(v, u)
    edge = 1.0 + sum(amp * math.cos(k * t + phase) for k, amp, phase in body["harmonics"])
    rho = math.sqrt(u * u + v * v)
    return rho <= edge, abs(rho - edge)


def _segment_distance(py, px, p0, p1):
    # Closest point of the segment: the projection clamped to [0, 1].
    (y0, x0), (y1, x1) = p0, p1
    length2 = (y1 - y0) ** 2 + (x1 - x0) ** 2
    s = ((py - y0) * (y1 - y0) + (px - x0) * (x1 - x0)) / length2
    s = min(1.0, max(0.0, s))
    return math.hypot(py - (y0 + s * (y1 - y0)), px - (x0 + s * (x1 - x0)))


def _in_limb(limb, py, px):
    d = min(_segment_distance(py, px, a, b) for a, b in zip(limb["points"], limb["points"][1:]))
    return d <= limb["width"] / 2, abs(d - limb["width"] / 2)


def _brute_force(geometry):
    """(class mask, part mask, per-object footprints, undecided pixels) from the geometry."""
    h, w = geometry["size"]
    cls = np.zeros((h, w), dtype=np.uint8)
    part = np.zeros((h, w), dtype=np.uint8)
    undecided = np.zeros((h, w), dtype=bool)
    footprints = []
    for obj in geometry["objects"]:
        footprint = np.zeros((h, w), dtype=bool)
        for py in range(h):
            for px in range(w):
                body, margin = _in_body(obj["body"], py, px)
                limb = False
                for one in obj["limbs"]:
                    inside, m = _in_limb(one, py, px)
                    limb |= inside
                    margin = min(margin, m)
                undecided[py, px] |= margin < 1e-6
                if body or limb:
                    footprint[py, px] = True
                    cls[py, px] = obj["class"]
                    part[py, px] = 1 if body else 2
        footprints.append(footprint)
    return cls, part, footprints, undecided


def test_masks_match_brute_force_geometry(limbs):
    for sample_id in _ids(limbs):
        geometry = read_geometry(limbs, sample_id)
        assert geometry["size"] == list(SIZE) and geometry["objects"]
        cls, part, footprints, undecided = _brute_force(geometry)
        mask = _png(limbs / "SegmentationClass" / f"{sample_id}.png")
        parts = read_part_mask(limbs, sample_id)
        decided = ~undecided
        assert (mask[decided] == cls[decided]).all(), sample_id
        assert (parts[decided] == part[decided]).all(), sample_id
        # No occlusion: footprints are disjoint and every object shows a body and its limbs.
        assert sum(f.astype(int) for f in footprints).max() <= 1
        for obj, footprint in zip(geometry["objects"], footprints):
            assert (part[footprint] == 1).any() and (part[footprint] == 2).any()
            assert 1 <= obj["class"] < len(LIMBS_CLASSES)


def test_no_border_cuts_no_void_and_objects_apart(limbs):
    for sample_id in _ids(limbs):
        mask = _png(limbs / "SegmentationClass" / f"{sample_id}.png")
        assert 255 not in mask
        for edge in (mask[:2], mask[-2:], mask[:, :2], mask[:, -2:]):
            assert not edge.any(), sample_id
        objects, count = ndimage.label(mask > 0)  # one piece per object
        assert count == len(read_geometry(limbs, sample_id)["objects"])
        for k in range(1, count + 1):
            distance = ndimage.distance_transform_edt(objects != k)
            others = (objects > 0) & (objects != k)
            assert not others.any() or distance[others].min() > 4


def test_part_mask_agrees_with_class_mask(limbs):
    for sample_id in _ids(limbs):
        mask = _png(limbs / "SegmentationClass" / f"{sample_id}.png")
        parts = read_part_mask(limbs, sample_id)
        assert set(np.unique(parts).tolist()) <= {0, 1, 2}
        assert ((parts > 0) == (mask > 0)).all()


def test_limb_widths_by_distance_transform(limbs):
    measured = []
    for sample_id in _ids(limbs):
        geometry = read_geometry(limbs, sample_id)
        parts = read_part_mask(limbs, sample_id)
        pieces, count = ndimage.label(parts == 2)
        limbs_here = [limb for o in geometry["objects"] for limb in o["limbs"]]
        assert count == len(limbs_here)  # one piece per limb: limbs never touch
        # Twice the largest inscribed distance is a strip's width (+ up to 2 px: the
        # distance runs to the centre of the first pixel outside).
        inside = ndimage.distance_transform_edt(parts == 2)
        for limb in limbs_here:
            assert 3.0 <= limb["width"] <= 10.0
            tip = pieces[round(limb["points"][-1][0]), round(limb["points"][-1][1])]
            width = 2 * inside[pieces == tip].max()
            assert tip > 0 and width <= limb["width"] + 2.0
            measured.append(width)
    assert 2.8 <= min(measured) and max(measured) <= 12.0


def test_body_stripe_orientation_is_the_class():
    # Oracle: the structure tensor of the body's grey gradients (independent of how the
    # stripes were drawn) gives the dominant gradient direction φ; horizontal stripes have
    # vertical gradients (φ ≈ ±90°), vertical stripes φ ≈ 0°, diagonal ones φ ≈ ±45°.
    right = total = 0
    signs = set()
    for i in range(12):
        sample = render_limbs(0, "train", i, (96, 128))
        grey = sample.image.astype(float).mean(axis=-1)
        gy, gx = ndimage.sobel(grey, 0), ndimage.sobel(grey, 1)
        bodies, _ = ndimage.label(sample.part == 1)
        for obj in sample.geometry["objects"]:
            k = bodies[int(obj["body"]["cy"]), int(obj["body"]["cx"])]
            inner = ndimage.binary_erosion(bodies == k, iterations=2)
            jxx, jyy = (gx[inner] ** 2).sum(), (gy[inner] ** 2).sum()
            jxy = (gx[inner] * gy[inner]).sum()
            phi = math.degrees(0.5 * math.atan2(2 * jxy, jxx - jyy))
            guess = 1 if abs(abs(phi) - 90) < 22.5 else 2 if abs(phi) < 22.5 else 3
            right += guess == obj["class"]
            total += 1
            if obj["class"] == 3:
                signs.add(math.copysign(1, obj["texture"]["normal"]))
    assert total >= 15 and right / total >= 0.9
    assert signs == {-1.0, 1.0}  # both diagonals: a horizontal flip keeps the class


def _max_class_colour_distance(render, classes, samples):
    sums, counts = np.zeros((classes, 3)), np.zeros(classes)
    for i in range(samples):
        image, mask = render(i)
        for c in range(classes):
            if (mask == c).any():
                sums[c] += image[mask == c].mean(axis=0) / 255.0
                counts[c] += 1
    means = sums / np.maximum(counts[:, None], 1)
    return float(np.linalg.norm(means[:, None] - means[None], axis=-1).max())


def test_colour_carries_no_class():
    # Background included: colour tells neither class nor figure from ground. Oracle: the
    # objects task, whose classes own colour families, fails the same bound.
    def limbs_sample(i):
        sample = render_limbs(1, "train", i, SIZE)
        return sample.image, sample.mask

    assert _max_class_colour_distance(limbs_sample, len(LIMBS_CLASSES), 40) < 0.2
    assert _max_class_colour_distance(
        lambda i: render_synthetic_sample(1, "train", i, (48, 64))[:2], 9, 40) > 0.5


def test_layout_manifest_and_voc_reader(limbs):
    names = [line.split()[0] for line in (limbs / "classes.txt").read_text().splitlines()]
    assert names == LIMBS_CLASSES
    manifest = json.loads((limbs / "synthetic.json").read_text())
    assert manifest["task"] == "limbs" and manifest["parts"] == PART_NAMES
    train = open_dataset(f"synth:{limbs}", "train")
    assert len(train) == TRAIN and len(open_dataset(f"synth:{limbs}", "val")) == VAL
    image, mask = train[0]
    assert tuple(image.shape) == (3, *SIZE) and tuple(mask.shape) == SIZE
    assert (np.asarray(mask) == _png(limbs / "SegmentationClass" / "train_00000.png")).all()


def test_same_bytes_for_any_worker_count_and_seed_matters(limbs, tmp_path):
    again = generate_synthetic_dataset(tmp_path / "a", train=TRAIN, val=VAL, seed=5, size=SIZE,
                                       workers=2, task="limbs")
    assert _tree(again) == _tree(limbs)
    other = render_limbs(6, "train", 0, SIZE)
    assert not np.array_equal(other.image, render_limbs(5, "train", 0, SIZE).image)


def test_cli_and_missing_part_mask(tmp_path, capsys):
    out = tmp_path / "l"
    assert main(["data", "synth", "--task", "limbs", "--out", str(out), "--train", "2",
                 "--val", "1", "--size", "48,64", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["task"] == "limbs" and summary["classes"] == LIMBS_CLASSES
    assert read_part_mask(out, "val_00000").shape == (48, 64)
    with pytest.raises(InputError, match="val_00001.png: not found"):
        read_part_mask(out, "val_00001")
    with pytest.raises(InputError, match="Geometry"):
        read_geometry(tmp_path, "train_00000")
