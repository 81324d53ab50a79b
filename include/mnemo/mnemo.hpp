#pragma once
/// \file
/// mnemo: neural memories that learn at test time, with exact meta-gradients derived at
/// compile time. Umbrella header.

#include "mnemo/eval.hpp"
#include "mnemo/expr.hpp"
#include "mnemo/memory.hpp"
#include "mnemo/version.hpp"
