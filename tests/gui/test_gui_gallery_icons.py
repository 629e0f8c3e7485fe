"""The image gallery keeps the crop of every cell a change left as it was: one relabel re-crops that cell only."""

from __future__ import annotations

from dataclasses import replace

from PySide6.QtGui import QImage

from workbench.app.results import CellDetection
from workbench.gui.panels import GalleryPanel
from workbench.gui.style import cell_colour


def _icon_keys(gallery: GalleryPanel) -> dict[int, int]:
    return {gallery.list.item(i).data(256): gallery.list.item(i).icon().cacheKey()
            for i in range(gallery.list.count())}


def test_relabel_recrops_only_the_changed_cell(qtbot, bccd_image):
    image = QImage(str(bccd_image)).convertToFormat(QImage.Format.Format_RGB888)
    assert not image.isNull()
    cells = [CellDetection(i, (40.0 + 90 * i, 60.0, 120.0 + 90 * i, 140.0), 0.9, "normal", 0.8, 0.2)
             for i in range(3)]
    gallery = GalleryPanel()
    qtbot.addWidget(gallery)
    gallery.set_cells(cells, image)
    before = _icon_keys(gallery)

    cells[1] = replace(cells[1], label="blast", reviewed=True)
    gallery.set_cells(cells, image)
    after = _icon_keys(gallery)
    assert after[0] == before[0] and after[2] == before[2]       # unchanged cells: the same crop
    assert after[1] != before[1]                                 # the relabelled one: a new crop ...
    row = next(i for i in range(gallery.list.count()) if gallery.list.item(i).data(256) == 1)
    frame = gallery.list.item(row).icon().pixmap(GalleryPanel.ICON).toImage().pixelColor(1, 1)
    assert frame.rgb() == cell_colour(cells[1]).rgb()            # ... framed in its new label's colour

    other = image.copy()                                          # another image: every crop made again
    gallery.set_cells(cells, other)
    assert not set(_icon_keys(gallery).values()) & set(after.values())
