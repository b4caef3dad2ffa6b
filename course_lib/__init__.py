"""course_lib: the tested reference implementations the diffusion-course notebooks import.

One module per idea, in course order: schedules, forward, toy, procedural, data, unet, training,
sampling, guidance, metrics, viz, checks, authoring. Import the module you need, e.g.
``from course_lib import forward``; nothing heavy is imported here.
"""
__version__ = "0.1.0"
