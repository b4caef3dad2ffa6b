"""course_lib: the tested reference implementations the diffusion-course notebooks import.

One module per idea, in course order; import the module you need, e.g. ``from course_lib import forward``
(nothing heavy is imported here). ``PUBLIC`` below is the one list of what the notebooks use: each of these
has a docstring giving its shapes and the equation or algorithm it implements (``help(forward.q_sample)``).
Formula functions trust their inputs; the entry points (``sample``, ``inpaint``, ``ddim_invert``, ``train``,
the loaders, the CLI, ``checks.check``) check them once, through ``course_lib._validate``.
"""
__version__ = "0.1.0"

PUBLIC = {
    "schedules": ("linear_betas", "cosine_betas", "NoiseSchedule", "gather", "timestep_tensor"),
    "forward": ("q_sample", "q_posterior", "x0_from_eps", "eps_from_x0", "v_from_x0_eps", "x0_from_v", "eps_from_v",
                "score_from_eps", "eps_from_score", "model_eps", "q_sample_stats"),
    "toy": ("GaussianMixture", "optimal_denoiser", "digits_mixture"),
    "procedural": ("generate", "make_pattern", "make_noise", "ease", "progress_of", "noise_scale", "step_noise",
                   "blend_step", "steps_strip", "image_stats", "normalise", "EASINGS", "NOISE_SCHEDULES", "STAT_KEYS"),
    "data": ("load_digits", "load_image_folder", "image_folder", "ImageDataset", "data_loader",
             "iterate_batches"),
    "mnist": ("load_mnist", "load_idx", "read_idx"),
    "unet": ("sinusoidal_embedding", "TimeEmbedding", "ResidualBlock", "attention_weights", "AttentionBlock", "UNet",
             "count_parameters", "trace_shapes"),
    "config": ("UNetConfig", "TrainConfig", "unet_layout"),
    "devices": ("pick_device", "default_precision", "autocast", "grad_scaler"),
    "distributed": ("process_group", "rank", "world_size", "is_main", "share", "ShardSampler"),
    # load_checkpoint is checkpoints.py's; training imports it, and the notebooks call it training.load_checkpoint
    "training": ("diffusion_loss", "loss_target", "drop_labels", "EMA", "train", "load_checkpoint", "smooth"),
    "sampling": ("run_reverse", "SampleResult", "Trajectory", "ddpm_step", "sample"),
    "ddim": ("ddim_timesteps", "ddim_plan", "ddim_sigma", "ddim_step", "ddim_step_fn", "ddim_invert_step",
             "ddim_invert", "slerp"),
    "sde": ("VPSDE", "VESDE", "reverse_sde_drift", "pf_ode_drift", "euler_maruyama_step", "euler_step", "heun_step",
            "sigma_from_alpha_bar", "alpha_bar_from_sigma", "ddim_velocity", "uniform_times", "karras_sigmas",
            "karras_times", "ode_step_fn", "euler_maruyama_step_fn", "respaced_schedule", "integrate",
            "langevin_step", "langevin", "annealed_langevin"),
    "flows": ("flow_path", "flow_target", "x0_from_velocity", "eps_from_velocity", "velocity_from_score",
              "velocity_fn", "flow_loss", "sample_flow", "reflow_pairs", "straightness", "FLOW_ASSET", "TIME_SCALE"),
    "toy_mlp": ("TimeMLP", "time_from_sigma", "dsm_loss", "score_fn", "fit"),
    "sampler_error": ("sliced_wasserstein", "sampling_floor", "excess_error", "fit_slope", "exact_score_fn",
                      "exact_eps_fn", "run_exact_sampler", "error_vs_nfe", "fitted_slopes", "SAMPLERS", "ORDERS",
                      "TABLE_ASSET"),
    "guidance": ("guided_eps", "cfg_model", "classifier_guidance_eps", "classifier_guided_model", "inpaint_merge",
                 "inpaint"),
    "metrics": ("class_probabilities", "confident_fraction", "evaluate_samples", "real_data_reference"),
    "viz": ("to_display", "show_images", "animate_images", "animate_points"),
    "sprites": ("FAMILIES", "template_codes", "mirrored_mask", "outline_of", "make_sprites", "load_sprites"),
    "sprite_metrics": ("REPORT_ROWS", "real_floor", "fresh_sprites", "evaluate_sprites", "symmetry_error",
                       "kernel_distance"),
    "autoencoder": ("load_autoencoder", "latent_scale_factor", "encode_means", "latent_dataset", "decode_latents"),
    "gan": ("load_gan", "discriminator_loss", "generator_loss"),
    "compare": ("ASSETS", "SHIPPED", "SAMPLING_ETA", "diffusion_sprites", "gan_sprites", "training_memory",
                "comparison_rows"),
}
