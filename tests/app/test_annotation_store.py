"""The annotation project store (Qt-free): audit trail, atomic saves, importers, exporters, and the retraining
round trip VOC (BCCD) -> edit -> export YOLO -> `workbench train detector` (one epoch)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest
import yaml

from workbench.app.annotation.exporters import export_coco, export_crops, export_voc, export_yolo, split_images
from workbench.app.annotation.importers import import_coco, import_voc, import_yolo, read_points
from workbench.app.annotation.store import ProjectStore, cell_json, manual_cell

BCCD_MAP = {"WBC": "normal", "RBC": None, "Platelets": None}
BCCD_STEMS = ["BloodImage_00000", "BloodImage_00001", "BloodImage_00002", "BloodImage_00003"]


@pytest.fixture()
def store(tmp_path):
    s = ProjectStore.open(tmp_path / "project", operator="alice")
    yield s
    s.close()


def _image(store, name="a.png", size=(64, 48)):
    import numpy as np
    from PIL import Image

    path = store.root / name
    Image.fromarray(np.full((size[1], size[0], 3), 200, np.uint8)).save(path)
    return store.add_image(path, *size)


def test_edits_are_stored_and_audited_with_operator_and_time(store):
    entry = _image(store)
    assert store.labels == ["blast", "normal"]
    a = manual_cell(0, (1.5, 2.25, 20.0, 30.0), "blast")
    store.apply(entry.id, {0: None}, {0: a}, "add")
    b = manual_cell(0, (3.0, 4.0, 21.0, 31.0), "normal")
    store.apply(entry.id, {0: a}, {0: b}, "move")
    store.apply(entry.id, {0: b}, {0: None}, "delete")
    assert store.cells(entry.id) == []
    store.mark_reviewed(entry.id, operator="bob")

    rows = store.audit(entry.id)
    assert [r.action for r in rows] == ["add_image", "add", "move", "delete", "review"]
    assert rows[1].before is None and rows[1].after["xyxy"] == [1.5, 2.25, 20.0, 30.0]
    assert rows[2].before["label"] == "blast" and rows[2].after["label"] == "normal"
    assert rows[3].after is None
    assert [r.operator for r in rows] == ["alice"] * 4 + ["bob"]
    assert all(r.time.endswith("+00:00") and r.time.startswith("20") for r in rows)
    reviewed = store.image(entry.id)
    assert (reviewed.status, reviewed.reviewed_by) == ("reviewed", "bob") and reviewed.reviewed_at
    assert [e.name for e in store.images("reviewed")] == ["a.png"] and store.images("new") == []


def test_store_reopens_with_exact_coordinates(tmp_path):
    with ProjectStore.open(tmp_path, operator="x") as s:
        entry = _image(s)
        cell = manual_cell(0, (0.1, 0.2, 10.123456789, 20.987654321), "blast")
        s.apply(entry.id, {0: None}, {0: cell}, "add")
    with ProjectStore.open(tmp_path) as s:
        assert s.cells(s.image(tmp_path / "a.png").id) == [cell]


def test_failed_save_keeps_previous_labels(store, monkeypatch):
    entry = _image(store)
    old = manual_cell(0, (1, 1, 10, 10), "blast")
    store.apply(entry.id, {0: None}, {0: old}, "add")
    n_audit = len(store.audit())
    real_audit = store._audit

    def failing_audit(db, *args, **kwargs):
        real_audit(db, *args, **kwargs)
        raise OSError("disk full (simulated mid-save failure)")

    monkeypatch.setattr(store, "_audit", failing_audit)
    with pytest.raises(OSError):
        store.replace_cells(entry.id, [manual_cell(0, (5, 5, 9, 9), "normal"), manual_cell(1, (2, 2, 3, 3), "blast")],
                            "import", "import")
    monkeypatch.undo()
    assert store.cells(entry.id) == [old] and len(store.audit()) == n_audit


def test_killed_saving_process_leaves_previous_labels_intact(tmp_path):
    with ProjectStore.open(tmp_path, operator="x") as s:
        entry = _image(s)
        old = [manual_cell(0, (1, 1, 10, 10), "blast"), manual_cell(1, (20, 20, 30, 30), "normal")]
        s.replace_cells(entry.id, old, "import", "import")
        n_audit = len(s.audit())
    script = textwrap.dedent(f"""
        import sys, time
        from workbench.app.annotation.store import ProjectStore, manual_cell
        s = ProjectStore.open({str(tmp_path)!r}, operator="killed")
        s._db.execute("PRAGMA cache_size=1")    # spill the uncommitted pages to the WAL file: a real mid-write
        with s.transaction() as db:
            s._write_cells(db, {entry.id}, {{}}, {{0: None, 1: manual_cell(1, (0, 0, 2, 2), "blast")}}, "edit",
                           "manual")
            for i in range(2, 2000):
                s._write_cells(db, {entry.id}, {{}}, {{i: manual_cell(i, (i, i, i + 1, i + 1), "blast")}}, "edit",
                               "manual")
            print("mid-write", flush=True)
            time.sleep(60)
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "mid-write"
        assert (tmp_path / "project.sqlite-wal").stat().st_size > 100_000   # half a change is on disk
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    with ProjectStore.open(tmp_path) as s:
        assert s.cells(entry.id) == old and len(s.audit()) == n_audit
        assert s._db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


def test_split_by_image_is_seeded_and_disjoint():
    names = [f"im{i:02d}.jpg" for i in range(20)]
    split = split_images(names, seed=3)
    assert split == split_images(list(reversed(names)), seed=3)
    assert sorted(split) == names and {v for v in split.values()} == {"train", "val", "test"}
    assert list(split.values()).count("train") == 14
    assert set(split_images(["a", "b"]).values()) == {"train", "val"}


def test_exports_roundtrip_through_importers(store, tmp_path):
    entries = [_image(store, f"im{i}.png") for i in range(4)]
    for i, entry in enumerate(entries):
        store.replace_cells(entry.id, [manual_cell(0, (2.0, 4.0, 18.0 + i, 20.0), "blast"),
                                       manual_cell(1, (30.0, 10.0, 50.0, 40.0), "normal")], "import", "import")
        store.mark_reviewed(entry.id)
    store.mark_reviewed(entries[3].id, reviewed=False)   # not reviewed: not exported

    data = export_yolo(store, tmp_path / "yolo")
    cfg = yaml.safe_load(data.read_text())
    assert cfg["names"] == {0: "blast", 1: "normal"}
    labels = sorted((tmp_path / "yolo" / "labels").rglob("*.txt"), key=lambda p: p.stem)
    assert [p.stem for p in labels] == ["im0", "im1", "im2"]
    label_of = {p.stem: p for p in labels}
    assert {p.parent.name for p in labels} <= {"train", "val", "test"}
    cells = import_yolo(label_of["im1"], 64, 48, ["blast", "normal"])
    assert [c.label for c in cells] == ["blast", "normal"]
    assert cells[0].xyxy == pytest.approx((2.0, 4.0, 19.0, 20.0), abs=1e-3)
    single = yaml.safe_load(export_yolo(store, tmp_path / "det", single_class="wbc").read_text())
    assert single["names"] == {0: "wbc"}

    coco = import_coco(export_coco(store, tmp_path / "coco.json"))
    assert sorted(coco) == ["im0.png", "im1.png", "im2.png"]
    assert coco["im2.png"][2][0].xyxy == pytest.approx((2.0, 4.0, 20.0, 20.0))
    export_voc(store, tmp_path / "voc")
    name, w, h, voc_cells = import_voc(tmp_path / "voc" / "Annotations" / "im0.xml")
    assert (name, w, h) == ("im0.png", 64, 48)
    assert [c.xyxy for c in voc_cells] == [c.xyxy for c in store.cells(entries[0].id)]

    from classification.dataset import CropDataset, read_split_file

    split_csv = export_crops(store, tmp_path / "crops", size=32)
    records = read_split_file(split_csv)
    assert len(records) == 6 and {r.label for r in records} == {"blast", "normal"}
    by_image = {}
    for r in records:
        assert r.file.startswith(f"{r.split}/{r.label}/") and (tmp_path / "crops" / r.file).is_file()
        by_image.setdefault(r.source_image, set()).add(r.split)
    assert all(len(parts) == 1 for parts in by_image.values())   # never one image in two splits
    assert len(CropDataset(tmp_path / "crops")) == 6 and CropDataset(split_csv).read_image(0).shape == (32, 32, 3)


def test_point_file_reader(tmp_path):
    path = tmp_path / "im.xyc"
    path.write_text("10\t20\n\n30 40\n")
    assert read_points(path) == [(10.0, 20.0), (30.0, 40.0)]


def test_voc_bccd_edit_export_yolo_train_one_epoch(bccd_root, tmp_path):
    """Round trip: import VOC (BCCD) -> edit -> export YOLO -> `workbench train detector` one epoch."""
    from workbench import cli

    images = tmp_path / "images"
    images.mkdir()
    with ProjectStore.open(images, operator="annotator") as store:
        for stem in BCCD_STEMS:
            name, w, h, cells = import_voc(bccd_root / "Annotations" / f"{stem}.xml", BCCD_MAP)
            (images / name).write_bytes((bccd_root / "JPEGImages" / name).read_bytes())
            entry = store.add_image(images / name, w, h)
            store.replace_cells(entry.id, cells, "import voc", "import")
            assert cells and all(c.label == "normal" for c in cells)
        first = store.images()[0]
        cell = store.cells(first.id)[0]
        moved = manual_cell(cell.cell_id, (cell.xyxy[0] + 5, cell.xyxy[1], cell.xyxy[2] + 5, cell.xyxy[3]), "blast")
        store.apply(first.id, {cell.cell_id: cell}, {cell.cell_id: moved}, "move")
        for entry in store.images():
            store.mark_reviewed(entry.id)
        data = export_yolo(store, tmp_path / "yolo", single_class="wbc", fractions=(0.5, 0.5, 0.0))
        assert any(r.action == "move" and r.operator == "annotator" for r in store.audit(first.id))
    started = time.monotonic()
    code = cli.main(["train", "detector", "--data", str(data), "--epochs", "1", "--imgsz", "64", "--batch", "2",
                     "--workers", "0", "--no-plots", "--out", str(tmp_path / "runs"), "--name", "rt"])
    assert code == 0, f"train detector exited {code} after {time.monotonic() - started:.0f}s"
    best = tmp_path / "runs" / "rt" / "weights" / "best.pt"
    assert best.is_file() and (best.parent / "manifest_entry.yaml").is_file()


def test_allidb_points_become_boxes_with_the_dataset_builders_method(tmp_path):
    import cv2

    from tests.conftest import ALLIDB1, need
    from workbench.core.segmentation import point_to_box
    from workbench.app.annotation.importers import import_points

    image = need(ALLIDB1 / "im" / "Im006_1.jpg")
    points = read_points(need(ALLIDB1 / "xyc" / "Im006_1.xyc"))
    rgb = cv2.cvtColor(cv2.imread(str(image)), cv2.COLOR_BGR2RGB)
    cells, missed = import_points(rgb, points)
    assert len(cells) + missed == len(points) and len(cells) >= len(points) - 2
    assert all(c.label == "blast" for c in cells)
    first = point_to_box(rgb, *points[0], kind="blast", neighbours=points[1:])
    assert first is not None and cells[0].xyxy == first.xyxy
    for cell in cells:
        x1, y1, x2, y2 = cell.xyxy
        assert any(x1 <= x <= x2 and y1 <= y <= y2 for x, y in points)
    with ProjectStore.open(tmp_path) as store:
        entry = store.add_image(image, rgb.shape[1], rgb.shape[0])
        store.replace_cells(entry.id, cells, "import xyc", "import")
        assert store.cells(entry.id) == cells and set(store.sources(entry.id).values()) == {"import"}


def test_import_label_folder_reads_voc_yolo_and_coco(store, tmp_path):
    from workbench.core.voc import VocAnnotation, VocObject, write_voc
    from workbench.app.annotation.importers import import_label_folder

    images = [store.root / f"im{i}.png" for i in range(4)]
    for path in images:
        _image(store, path.name)
    labels = tmp_path / "labels"
    write_voc(labels / "im0.xml", VocAnnotation("im0.png", 64, 48, [VocObject("WBC", (1, 2, 30, 40)),
                                                                    VocObject("RBC", (5, 5, 9, 9))]))
    (labels / "im1.txt").write_text("0 0.5 0.5 0.25 0.5\n")
    (labels / "c.json").write_text(json.dumps({
        "images": [{"id": 7, "file_name": "im2.png", "width": 64, "height": 48}],
        "annotations": [{"id": 1, "image_id": 7, "category_id": 3, "bbox": [10, 10, 20, 5]}],
        "categories": [{"id": 3, "name": "normal"}]}))
    counts = import_label_folder(store, images, labels, label_map={"WBC": "normal", "RBC": None})
    assert counts == {"im0.png": 1, "im1.png": 1, "im2.png": 1}
    by_name = {e.name: store.cells(e.id) for e in store.images()}
    assert [(c.xyxy, c.label) for c in by_name["im0.png"]] == [((1.0, 2.0, 30.0, 40.0), "normal")]
    assert by_name["im1.png"][0].xyxy == pytest.approx((24.0, 12.0, 40.0, 36.0))
    assert by_name["im1.png"][0].label == "blast"
    assert by_name["im2.png"][0].xyxy == (10.0, 10.0, 30.0, 15.0) and by_name["im3.png"] == []
    assert [e.name for e in store.images("labelled")] == ["im0.png", "im1.png", "im2.png"]
    assert store.labels == ["blast", "normal"]


# --------------------------------------------------------------------------------------------------------------------
# two writers on one project (two windows, two processes)


def test_stale_before_is_refused_and_new_ids_come_from_the_database(tmp_path):
    """Two windows on one project: a change based on boxes the other window changed meanwhile is refused (nothing
    saved), and boxes added at the same time get distinct ids."""
    from workbench.core.errors import ConcurrentEditError, WorkbenchError

    a = ProjectStore.open(tmp_path, operator="a")
    b = ProjectStore.open(tmp_path, operator="b")
    try:
        entry = _image(a)
        cell = manual_cell(0, (1, 1, 10, 10), "blast")
        a.apply(entry.id, {0: None}, {0: cell}, "add")
        seen_by_b = b.cells(entry.id)[0]
        moved = manual_cell(0, (2, 2, 11, 11), "blast")
        a.apply(entry.id, {0: cell}, {0: moved}, "move")
        with pytest.raises(ConcurrentEditError) as info:            # b's view is stale: overwrote a's move before
            b.apply(entry.id, {0: seen_by_b}, {0: manual_cell(0, (5, 5, 20, 20), "normal")}, "move")
        message = str(info.value)
        assert isinstance(info.value, WorkbenchError) and "\n" not in message
        assert str(a.path) in message and "changed by another window" in message and "reload" in message
        assert b.cells(entry.id) == [moved] and [r.action for r in b.audit(entry.id)][-1] == "move"

        # GUI-style ids (one more than what the window knows): both windows pick id 1; the second is refused
        new_a, new_b = manual_cell(1, (30, 30, 40, 40), "normal"), manual_cell(1, (50, 5, 60, 15), "blast")
        assert a.next_cell_id(entry.id) == b.next_cell_id(entry.id) == 1
        a.apply(entry.id, {1: None}, {1: new_a}, "add")
        with pytest.raises(ConcurrentEditError):
            b.apply(entry.id, {1: None}, {1: new_b}, "add")
        # ids from the database: never shared
        [got_a] = a.add_cells(entry.id, [manual_cell(0, (1, 30, 9, 40), "blast")], "add")
        [got_b] = b.add_cells(entry.id, [new_b], "add")
        assert (got_a.cell_id, got_b.cell_id) == (2, 3)
        assert a.cells(entry.id) == [moved, new_a, got_a, got_b]
        b.apply(entry.id, {3: got_b}, {3: None}, "delete")           # b's own, current view: accepted
        assert [c.cell_id for c in a.cells(entry.id)] == [0, 1, 2]
    finally:
        a.close()
        b.close()


_WRITER = textwrap.dedent("""
    import json, random, sys, time
    from pathlib import Path
    from workbench.app.annotation.store import ProjectStore, manual_cell
    from workbench.core.errors import ConcurrentEditError

    folder, operator, seed, n = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    store = ProjectStore.open(folder, operator=operator)
    image_id = store.image(folder / "a.png").id
    rng = random.Random(seed)
    view = {c.cell_id: c for c in store.cells(image_id)}      # what this window shows
    (folder / f"ready-{operator}").touch()
    while not (folder / "go").exists():
        time.sleep(0.001)
    done = refused = 0
    for _ in range(n):
        r = rng.random()
        x, y = rng.uniform(0, 50), rng.uniform(0, 40)
        box = (x, y, x + rng.uniform(1, 14), y + rng.uniform(1, 8))
        label = rng.choice(["blast", "normal"])
        try:
            if r < 0.2 or not view:                              # add: the id from the database
                [cell] = store.add_cells(image_id, [manual_cell(0, box, label)], "add")
                view[cell.cell_id] = cell
            elif r < 0.35:                                       # add: the id the GUI picks (may collide)
                cell_id = max([*view, store.next_cell_id(image_id) - 1]) + 1
                cell = manual_cell(cell_id, box, label)
                store.apply(image_id, {cell_id: None}, {cell_id: cell}, "add")
                view[cell_id] = cell
            elif r < 0.6:                                       # move or relabel a box this window shows
                cell_id = rng.choice(sorted(view))
                cell = manual_cell(cell_id, box, label)
                store.apply(image_id, {cell_id: view[cell_id]}, {cell_id: cell}, "move")
                view[cell_id] = cell
            else:                                                # delete one
                cell_id = rng.choice(sorted(view))
                store.apply(image_id, {cell_id: view[cell_id]}, {cell_id: None}, "delete")
                del view[cell_id]
            done += 1
        except ConcurrentEditError:                              # refused cleanly: reload the image
            refused += 1
            view = {c.cell_id: c for c in store.cells(image_id)}
        if rng.random() < 0.3:                                   # the window reloads the image now and then
            view = {c.cell_id: c for c in store.cells(image_id)}
    print(json.dumps({"done": done, "refused": refused}))
""")


def test_two_writer_processes_lose_nothing(tmp_path):
    """Two processes, 1,000 adds, moves and deletes in all on one image: every change either lands, based on the
    latest stored state (the audit trail is one unbroken chain per box), or is refused with ConcurrentEditError;
    nothing is lost and no other error occurs."""
    with ProjectStore.open(tmp_path, operator="setup") as s:
        entry = _image(s)
    procs = [subprocess.Popen([sys.executable, "-c", _WRITER, str(tmp_path), name, str(seed), "500"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for seed, name in enumerate(["w1", "w2"])]
    deadline = time.monotonic() + 60
    while not all((tmp_path / f"ready-{n}").exists() for n in ("w1", "w2")) and time.monotonic() < deadline:
        time.sleep(0.01)
    (tmp_path / "go").touch()
    results = {}
    for name, proc in zip(["w1", "w2"], procs):
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err[-2000:]
        results[name] = json.loads(out)
    assert sum(r["done"] + r["refused"] for r in results.values()) == 1000

    with ProjectStore.open(tmp_path) as s:
        rows = [r for r in s.audit(entry.id) if r.cell_id is not None]
        for name, r in results.items():                            # every accepted change is in the trail
            assert sum(row.operator == name for row in rows) == r["done"], name
        state: dict[int, dict] = {}
        for row in rows:                                           # ... and was based on the latest state
            assert row.before == state.get(row.cell_id), f"lost update at audit row {row.id} ({row.action})"
            if row.after is None:
                state.pop(row.cell_id, None)
            else:
                state[row.cell_id] = row.after
        stored = {c.cell_id: json.loads(cell_json(c)) for c in s.cells(entry.id)}
        assert stored == state


# --------------------------------------------------------------------------------------------------------------------
# a project file that cannot be written


def _assert_store_error(info, path, reason):
    from workbench.core.errors import WorkbenchError

    message = str(info.value)
    assert isinstance(info.value, WorkbenchError), type(info.value)
    assert str(path) in message and reason in message and "\n" not in message, message


def test_read_only_project_names_the_file_and_the_reason(tmp_path, monkeypatch):
    from workbench.core.errors import ProjectStoreError

    store = ProjectStore.open(tmp_path / "p", operator="x")
    try:
        entry = _image(store)
        cell = manual_cell(0, (1, 1, 10, 10), "blast")
        store.apply(entry.id, {0: None}, {0: cell}, "add")
        # a read-only database, for real (chmod does not stop root, who runs the tests)
        store._db.conn.execute("PRAGMA query_only=ON")
        with pytest.raises(ProjectStoreError) as info:
            store.apply(entry.id, {0: cell}, {0: None}, "delete")
        _assert_store_error(info, store.path, "read-only")
        with pytest.raises(ProjectStoreError) as info:
            store.mark_reviewed(entry.id)
        _assert_store_error(info, store.path, "read-only")
        store._db.conn.execute("PRAGMA query_only=OFF")
        assert store.cells(entry.id) == [cell] and store.image(entry.id).status == "labelled"
    finally:
        store.close()

    if os.geteuid() != 0:   # a read-only folder, where chmod binds
        os.chmod(tmp_path / "p", 0o555)
        os.chmod(tmp_path / "p" / "project.sqlite", 0o444)
        try:
            with pytest.raises(ProjectStoreError) as info:
                ProjectStore.open(tmp_path / "p")
            _assert_store_error(info, tmp_path / "p" / "project.sqlite", "cannot")
        finally:
            os.chmod(tmp_path / "p", 0o755)

    # a folder that cannot be opened (what a read-only folder without the file gives)
    import sqlite3

    def refuse(*args, **kwargs):
        raise sqlite3.OperationalError("unable to open database file")

    monkeypatch.setattr(sqlite3, "connect", refuse)
    with pytest.raises(ProjectStoreError) as info:
        ProjectStore.open(tmp_path / "q")
    _assert_store_error(info, tmp_path / "q" / "project.sqlite", "cannot open")
    monkeypatch.undo()
    (tmp_path / "file").write_text("not a folder")
    with pytest.raises(ProjectStoreError) as info:
        ProjectStore.open(tmp_path / "file" / "sub")
    _assert_store_error(info, tmp_path / "file" / "sub" / "project.sqlite", "cannot create the project folder")


def test_full_disk_and_locked_project_name_the_file_and_the_reason(tmp_path, monkeypatch):
    import sqlite3

    from workbench.app.annotation import store as store_module
    from workbench.core.errors import ProjectStoreError

    with ProjectStore.open(tmp_path, operator="x") as store:
        entry = _image(store)
        pages = store._db.execute("PRAGMA page_count").fetchone()[0]
        store._db.execute(f"PRAGMA max_page_count={pages + 1}")    # a full disk, for real: SQLITE_FULL
        many = [manual_cell(i, (i, i, i + 5, i + 5), "blast") for i in range(500)]
        with pytest.raises(ProjectStoreError) as info:
            store.replace_cells(entry.id, many, "import", "import")
        _assert_store_error(info, store.path, "disk is full")
        assert store.cells(entry.id) == []

    monkeypatch.setattr(store_module, "LOCK_TIMEOUT_S", 0.2)
    with ProjectStore.open(tmp_path, operator="y") as store:
        other = sqlite3.connect(str(tmp_path / "project.sqlite"), isolation_level=None)
        other.execute("BEGIN IMMEDIATE")                           # another program holds the write lock
        try:
            with pytest.raises(ProjectStoreError) as info:
                store.apply(entry.id, {0: None}, {0: manual_cell(0, (1, 1, 5, 5), "blast")}, "add")
            _assert_store_error(info, store.path, "lock")
        finally:
            other.execute("ROLLBACK")
            other.close()
        store.apply(entry.id, {0: None}, {0: manual_cell(0, (1, 1, 5, 5), "blast")}, "add")   # free again


def test_non_finite_or_huge_values_never_reach_the_database(store):
    from workbench.core.errors import ProjectStoreError

    entry = _image(store)
    for xyxy in [(float("nan"), 1, 5, 5), (1, 1, float("inf"), 5)]:
        with pytest.raises(ProjectStoreError, match="not a finite number"):
            store.apply(entry.id, {0: None}, {0: manual_cell(0, xyxy, "blast")}, "add")
    for size in [(1e300, 10), (float("inf"), 10), (-1, 10)]:
        with pytest.raises(ProjectStoreError, match="number of pixels"):
            store.add_image(store.root / "b.png", *size)
    assert store.cells(entry.id) == [] and [e.name for e in store.images()] == ["a.png"]


def test_file_that_is_not_a_project_names_the_file(tmp_path):
    from workbench.core.errors import ProjectStoreError

    (tmp_path / "project.sqlite").write_bytes(b"\x00garbage, not SQLite" * 300)
    with pytest.raises(ProjectStoreError) as info:
        ProjectStore.open(tmp_path)
    _assert_store_error(info, tmp_path / "project.sqlite", "not an annotation project")
