"""`dtq calibrate`: single operations of the real system measured for the simulator's parameters
(calibrate.py says how), and the host probe that ties a run to the calibration's host speed."""
