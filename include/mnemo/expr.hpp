#pragma once
/// \file
/// The expression language: symbols, operations, `grad`, `to_string`. Types only.

#include "mnemo/expr/dag.hpp"
#include "mnemo/expr/derivative.hpp"
#include "mnemo/expr/fixed_string.hpp"
#include "mnemo/expr/grad.hpp"
#include "mnemo/expr/node.hpp"
#include "mnemo/expr/ops/arithmetic.hpp"
#include "mnemo/expr/ops/elementwise.hpp"
#include "mnemo/expr/ops/huber.hpp"
#include "mnemo/expr/ops/matrix.hpp"
#include "mnemo/expr/ops/reduction.hpp"
#include "mnemo/expr/ops/stop_gradient.hpp"
#include "mnemo/expr/print.hpp"
#include "mnemo/expr/shape.hpp"
