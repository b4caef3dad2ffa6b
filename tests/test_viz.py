import numpy as np
import pytest
import torch

from course_lib.viz import image_grid, to_display


def test_to_display_maps_model_range_to_unit_range():
    shown = to_display(torch.tensor([-1.0, 0.0, 1.0, 3.0]))
    assert torch.equal(shown, torch.tensor([0.0, 0.5, 1.0, 1.0]))


def test_image_grid_places_each_image_in_its_tile():
    images = torch.stack([torch.full((3, 2, 4), value) for value in (-1.0, 0.0, 1.0)])   # (3, 3, 2, 4)
    grid = image_grid(images, ncols=2, pad=1)
    assert grid.shape == (2 * 2 + 1, 2 * 4 + 1, 3)
    assert np.all(grid[:2, :4] == 0.0) and np.all(grid[:2, 5:] == 0.5) and np.all(grid[3:, :4] == 1.0)
    assert np.all(grid[2] == 1.0), "padding is white"


def test_image_grid_enlarges_by_nearest_neighbour_with_thin_separators():
    images = torch.tensor([[[[-1.0, 1.0], [1.0, -1.0]]], [[[0.0, 0.0], [0.0, 0.0]]]])   # (2, 1, 2, 2)
    grid = image_grid(images, ncols=2, pad=2, scale=3, pad_value=0.25)
    assert grid.shape == (6, 3 * 2 + 2 + 3 * 2, 1)
    assert np.all(grid[:3, :3] == 0.0) and np.all(grid[:3, 3:6] == 1.0) and np.all(grid[3:, :3] == 1.0)
    assert np.all(grid[:, 6:8] == 0.25), "a separator two pixels wide, whatever the scale"
    assert np.all(grid[:, 8:] == 0.5)
    with pytest.raises(ValueError, match="scale"):
        image_grid(images, scale=0)


@pytest.mark.parametrize("bad, error", [(np.zeros((2, 1, 4, 4)), TypeError), (torch.zeros(1, 4, 4), ValueError)])
def test_bad_images_are_named(bad, error):
    with pytest.raises(error, match="images"):
        image_grid(bad)


def test_animate_images_has_one_frame_per_leading_index():
    from course_lib.viz import animate_images

    frames = torch.linspace(-1, 1, 5)[:, None, None, None, None].expand(5, 4, 1, 3, 3)
    animation = animate_images(frames, titles=[f"t = {t}" for t in range(5)])
    html = animation.to_jshtml()
    assert html.count("data:image/png;base64") == 5
    with pytest.raises(ValueError, match="one string per frame"):
        animate_images(frames, titles=["only one"])
    with pytest.raises(ValueError, match=r"\(F, N, C, H, W\)"):
        animate_images(frames[0])


@pytest.mark.parametrize("n, ncols", [(1, None), (40, 5), (64, 8), (16, 16)])
def test_show_images_draws_each_digit_at_least_40_screen_pixels(n, ncols):
    """Issue 12: on a new figure, one 8x8 digit covers >= ~40 px on screen at the notebook's dpi."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from course_lib.viz import show_images

    with plt.rc_context({"figure.dpi": 72}):
        ax = show_images(torch.zeros(n, 1, 8, 8), ncols=ncols, title="a title")
        fig = ax.figure
        fig.canvas.draw()
        image_box = ax.get_images()[0].get_window_extent()
        columns = ncols or int(np.ceil(np.sqrt(n)))
        rows = int(np.ceil(n / columns))
        per_pixel = image_box.width / (columns * 9 - 1)         # the grid has a 1-pixel gap between digits
        assert per_pixel * 8 >= 40, f"one digit is {per_pixel * 8:.0f} px wide"
        assert abs(image_box.height / (rows * 9 - 1) - per_pixel) < 0.05 * per_pixel, "pixels stay square"
        assert fig.get_size_inches().max() <= 16.0 + 1e-9
        plt.close(fig)


def test_show_images_on_a_given_axis_leaves_its_figure_alone():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from course_lib.viz import show_images

    fig, ax = plt.subplots(figsize=(3, 2))
    assert show_images(torch.zeros(4, 1, 8, 8), ax=ax) is ax
    assert tuple(fig.get_size_inches()) == (3, 2)
    plt.close(fig)
