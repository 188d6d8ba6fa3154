"""What training optimises: the JEPA regression and the anti-collapse terms (`losses`), the mask generators
(`masks`), the EMA target update (`ema`) and the LR / WD / momentum schedules (`schedules`)."""
