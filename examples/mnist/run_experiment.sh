#!/usr/bin/env bash
# Adjutant runs this with the hyperparameters as one JSON argument, from this folder.
python train_model.py "$1"
