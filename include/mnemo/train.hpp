#pragma once
/// \file
/// Training: named tensor lists, initialisers, optimizers and schedules. Checkpoints are in
/// `mnemo/train/checkpoint.hpp` (they need libzip: the CMake target `mnemo::train`).

#include "mnemo/train/init.hpp"
#include "mnemo/train/optim.hpp"
#include "mnemo/train/schedule.hpp"
#include "mnemo/train/tensors.hpp"
