#pragma once

// The whole plugin SDK. A plugin includes this (or the single headers it
// needs) and nothing from the runtime.
#include "nudge/sdk/abi.hpp"
#include "nudge/sdk/blocking_worker.hpp"
#include "nudge/sdk/config.hpp"
#include "nudge/sdk/context.hpp"
#include "nudge/sdk/export.hpp"
#include "nudge/sdk/fanout.hpp"
#include "nudge/sdk/health_probe.hpp"
#include "nudge/sdk/history.hpp"
#include "nudge/sdk/log.hpp"
#include "nudge/sdk/log_limiter.hpp"
#include "nudge/sdk/message.hpp"
#include "nudge/sdk/plugin.hpp"
#include "nudge/sdk/presence.hpp"
#include "nudge/sdk/sink.hpp"
#include "nudge/sdk/source.hpp"
#include "nudge/sdk/status.hpp"
#include "nudge/sdk/text.hpp"
#include "nudge/sdk/transform.hpp"
