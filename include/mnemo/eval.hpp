#pragma once
/// \file
/// Evaluation: bind symbols to xtensor data and evaluate expressions with `plan`.

#include "mnemo/eval/bind.hpp"
#include "mnemo/eval/graph.hpp"
#include "mnemo/eval/plan.hpp"
