#pragma once
/// \file
/// Test-time memories over sequences: models, losses, update rules, gates, and the
/// forward and meta-gradient over whole sequences.

#include "mnemo/memory/gates.hpp"
#include "mnemo/memory/heads.hpp"
#include "mnemo/memory/losses.hpp"
#include "mnemo/memory/models.hpp"
#include "mnemo/memory/params.hpp"
#include "mnemo/memory/rules.hpp"
#include "mnemo/memory/sequence.hpp"
#include "mnemo/memory/step.hpp"
